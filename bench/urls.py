"""The product's URLs plus the harness's floor and foil views."""

from django.urls import path

from asgi_project.urls import urlpatterns as product_urlpatterns

from . import views

urlpatterns = [
    *product_urlpatterns,
    path("bench/floor-hello/", views.floor_hello),
    path("bench/floor-insert/", views.floor_insert),
    path("bench/inline/", views.inline),
]
