"""Transport: play / pause / seek with sound, one clock for the playhead, the preview and the audio.

The playhead follows a monotonic clock (QElapsedTimer) ticking every ``tick_ms``; when QtMultimedia and
an audio output are available, the speech plays through a QMediaPlayer started at the same position and
the clock is nudged to the player's position whenever they drift apart by more than ``max_drift_s``
(audio is the master, as in video players). Without an audio device (headless machines, CI) playback
still runs, silently, on the clock alone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, QObject, QTimer, QUrl, Signal

log = logging.getLogger(__name__)


def _multimedia():
    """The QtMultimedia module, or None when it cannot load (e.g. libpulse missing on Linux)."""
    try:
        from PySide6 import QtMultimedia
    except ImportError as exc:
        log.warning("no sound: QtMultimedia unavailable (%s)", exc)
        return None
    return QtMultimedia


class Transport(QObject):
    """Playback state and position in seconds.

    Signals:
        position_changed(seconds): during playback (every tick) and after a seek.
        playing_changed(bool).
    """

    position_changed = Signal(float)
    playing_changed = Signal(bool)

    def __init__(self, *, tick_ms: int = 20, max_drift_s: float = 0.08, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.duration = 0.0
        self.range_s: tuple[float, float] | None = None
        self._position = 0.0
        self._start_position = 0.0
        self._clock = QElapsedTimer()
        self._timer = QTimer(self, interval=tick_ms)
        self._timer.timeout.connect(self._tick)
        self._max_drift = max_drift_s
        self._player = None
        self._audio_out = None
        self._source: Path | None = None
        self._player_checked = False
        self.has_sound = False

    def warm_up(self) -> None:
        """Load the sound backend and create the player now rather than on the first Play.

        Loading QtMultimedia and listing the audio devices takes ~0.1 s once per process. It has to happen
        on the UI thread: the device query waits for that thread's event loop, so from a worker thread it
        deadlocks whenever the UI thread waits for the GIL. The window calls this right after it is shown,
        before any work starts, so playback (and a render or export running beside it) never pays it."""
        self._ensure_player()

    # -- media -------------------------------------------------------------------------------------

    def set_media(self, path: Path | None, duration_s: float) -> None:
        """The speech file to play (audio or video) and its duration in seconds."""
        self.pause()
        self.duration = max(0.0, float(duration_s))
        self._source = path
        if self._player is not None:
            self._player.setSource(QUrl.fromLocalFile(str(path)) if path else QUrl())
        self.seek(min(self._position, self.duration))

    def _ensure_player(self) -> None:
        """Create the QMediaPlayer lazily (first play), only when an audio output exists."""
        if self._player is not None or self._player_checked:
            return
        self._player_checked = True
        qm = _multimedia()
        if qm is None or not qm.QMediaDevices.audioOutputs():
            self.has_sound = False
            return
        self._audio_out = qm.QAudioOutput(self)
        self._player = qm.QMediaPlayer(self)
        self._player.setAudioOutput(self._audio_out)
        if self._source is not None:
            self._player.setSource(QUrl.fromLocalFile(str(self._source)))
        self.has_sound = True

    # -- state -------------------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    @property
    def position(self) -> float:
        """Playhead time in seconds."""
        return self._position

    def _bounds(self) -> tuple[float, float]:
        return self.range_s if self.range_s is not None else (0.0, self.duration)

    def play(self) -> None:
        if self.playing or self.duration <= 0:
            return
        start, stop = self._bounds()
        if not start <= self._position < stop - 1e-3:
            self._position = start
        self._start_position = self._position
        self._clock.start()
        self._ensure_player()
        if self._player is not None:
            self._player.setPosition(int(self._position * 1000))
            self._player.play()
        self._timer.start()
        self.playing_changed.emit(True)

    def pause(self) -> None:
        if not self.playing:
            return
        self._timer.stop()
        if self._player is not None:
            self._player.pause()
        self.playing_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def seek(self, t: float) -> None:
        """Move the playhead to ``t`` seconds (clipped to the clip)."""
        self._position = min(max(0.0, float(t)), self.duration)
        if self.playing:
            self._start_position = self._position
            self._clock.restart()
            if self._player is not None:
                self._player.setPosition(int(self._position * 1000))
        self.position_changed.emit(self._position)

    def _tick(self) -> None:
        t = self._start_position + self._clock.elapsed() / 1000.0
        if self._player is not None and self._player.isPlaying():
            audio_t = self._player.position() / 1000.0
            if abs(audio_t - t) > self._max_drift:
                self._start_position, t = audio_t, audio_t
                self._clock.restart()
        stop = self._bounds()[1]
        if t >= stop:
            self._position = stop
            self.pause()
        else:
            self._position = t
        self.position_changed.emit(self._position)
