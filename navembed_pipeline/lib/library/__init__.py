"""The music library: what Navidrome lists, and what navembed keeps when its files go missing."""
