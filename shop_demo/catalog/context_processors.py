from .models import Category


def categories(request):
    """Categories for the navigation (a lazy queryset: no query unless a template uses it)."""
    return {"nav_categories": Category.objects.only("name", "slug")}
