"""Provider contracts (`base`), the name registry, and the local and fake implementations."""
