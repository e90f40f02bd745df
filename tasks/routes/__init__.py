"""Route phases: provision, check, evict, terminate, publish for scraping."""
