"""Encoding: one batch kernel, the engines that schedule it, and the finish stage."""
