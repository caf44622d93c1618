"""Shipped presets (*.toml) and grid sheets (*.xlsx): package data, read by bcpareto.config."""
