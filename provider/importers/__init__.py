"""Converters from other admission systems' policies into Referee configuration."""
