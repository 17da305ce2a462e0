"""Task runners: where ready runs execute."""
