"""Figures drawn from the tidy result tables only (matplotlib, no pyplot global state)."""
