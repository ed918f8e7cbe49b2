"""Singer tap for Exnaton smart-meter energy readings."""
