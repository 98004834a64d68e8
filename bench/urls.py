"""The product's URLs plus the harness's extra views (bench/views.py)."""

from django.urls import path

from asgi_project.urls import urlpatterns as product_urlpatterns

from . import views

urlpatterns = [
    *product_urlpatterns,
    path("bench/floor-hello/", views.floor_hello),
    path("bench/thread-insert/", views.thread_insert),
    path("bench/inline/", views.inline),
]
