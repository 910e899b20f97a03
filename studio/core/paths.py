"""Per-user locations (platformdirs): model store, settings, caches. Nothing is written in the repo."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "TalkingHeadStudio"
APP_AUTHOR = "TalkingHeadStudio"


def data_dir() -> Path:
    """User data dir (model store lives in ``data_dir()/models``); ``TALKSTUDIO_DATA_DIR`` overrides."""
    env = os.environ.get("TALKSTUDIO_DATA_DIR")
    return Path(env) if env else Path(platformdirs.user_data_dir(APP_NAME, APP_AUTHOR))


def config_dir() -> Path:
    """User config dir (settings.toml); ``TALKSTUDIO_CONFIG_DIR`` overrides."""
    env = os.environ.get("TALKSTUDIO_CONFIG_DIR")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP_NAME, APP_AUTHOR))


def cache_dir() -> Path:
    """User cache dir (speech analysis cache etc.); ``TALKSTUDIO_CACHE_DIR`` overrides."""
    env = os.environ.get("TALKSTUDIO_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir(APP_NAME, APP_AUTHOR))


def model_dir() -> Path:
    """Folder holding downloaded checkpoints listed in ``model_store/manifest.toml``."""
    return data_dir() / "models"
