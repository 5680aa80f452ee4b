from django.urls import path

from . import assistant, views

app_name = "catalog"

urlpatterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("search/", views.SearchView.as_view(), name="search"),
    path("search/photo/", views.PhotoSearchView.as_view(), name="search_photo"),
    path("assistant/", assistant.AssistantView.as_view(), name="assistant"),
    path("category/<slug:slug>/", views.CategoryView.as_view(), name="category"),
    path("product/<slug:slug>/", views.ProductView.as_view(), name="product"),
    path("basket/", views.CartView.as_view(), name="cart"),
    path("basket/add/", views.AddToCartView.as_view(), name="cart_add"),
    path("checkout/", views.CheckoutView.as_view(), name="checkout"),
    path("checkout/done/", views.OrderDoneView.as_view(), name="order_done"),
    path("demo/login/", views.DemoLoginView.as_view(), name="demo_login"),
]
