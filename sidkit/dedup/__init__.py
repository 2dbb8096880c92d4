"""Collision resolution: the suffix rule and ZCR."""
