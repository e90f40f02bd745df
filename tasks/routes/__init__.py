"""Route phases: provision, check, evict, drain, terminate, publish for scraping."""
