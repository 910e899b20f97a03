"""Talking Head Studio: lip-synced talking-head videos from one photo and a speech recording."""

__version__ = "0.1.0"
