from .models import Category


def categories(request):
    """Categories for the navigation (a lazy queryset: no query unless a template uses it)."""
    return {"nav_categories": Category.objects.only("name", "slug")}


def shop(request):
    """The basket's item count for the header, and whether the one-click demo login is on."""
    from .cart import Cart
    from .views import demo_login_enabled

    session = getattr(request, "session", None)
    return {
        "cart_count": len(Cart(session)) if session is not None else 0,
        "demo_login_enabled": demo_login_enabled(),
    }
