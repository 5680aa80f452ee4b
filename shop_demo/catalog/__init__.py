"""The demo shop's catalogue: categories, products, storefront and seeding commands."""
