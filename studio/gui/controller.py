"""Keeps an engine Session in step with the document, off the UI thread.

When a field that changes the render (identity, speech, sources, intensities, fps...) is edited, the
controller re-runs ``prepare`` in a :class:`~studio.gui.workers.JobWorker` after a short debounce,
cancelling a run that is already stale, and swaps the Session in when it is done. Keyframe edits only
re-apply ``apply_keyframes`` to the session's base track (milliseconds); with the neural engine the W+
trajectory summary of the keyframed track is then recomputed in a worker (``latents_changed``). The preview
:class:`~studio.gui.workers.FrameRenderer` always renders the current session and controls.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

from studio.app.jobs import controls_for, prepare_project
from studio.app.project import PREPARE_FIELDS
from studio.engine.pipeline import Session
from studio.gui.commands import DocumentModel
from studio.gui.workers import FrameRenderer, JobWorker, RenderSource
from studio.gui.runtime import freeze_heap


class SessionController(QObject):
    """The current Session and control track of the document.

    Signals:
        session_changed(Session or None): a new session (or none: the document lacks identity/speech).
        controls_changed(ControlTrack): the keyframed control track changed (same session).
        latents_changed(summary): the neural W+ trajectory summary of the keyframed track (see
        ``Session.latent_summary``), recomputed after a keyframe edit.
        busy(bool): prepare started / ended. progress(fraction, stage, message).
        problem(message, hint): prepare failed (shown in the status bar). notice(text, level): a warning or
        a note from prepare.
    """

    session_changed = Signal(object)
    controls_changed = Signal(object)
    latents_changed = Signal(object)
    busy = Signal(bool)
    progress = Signal(float, str, str)
    problem = Signal(str, str)
    notice = Signal(str, str)

    def __init__(self, model: DocumentModel, *, debounce_ms: int = 250, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.session: Session | None = None
        self.controls = None
        self.generation = 0
        self.renderer = FrameRenderer(parent=self)
        self.renderer.start()
        self._worker: JobWorker | None = None
        self._latents_worker: JobWorker | None = None
        self._pending = False
        self._debounce = QTimer(self, singleShot=True, interval=debounce_ms)
        self._debounce.timeout.connect(self._start_prepare)
        model.changed.connect(self._on_changed)

    @property
    def preparing(self) -> bool:
        return self._worker is not None or self._debounce.isActive()

    def _on_changed(self, changed: frozenset[str]) -> None:
        if "*" in changed or changed & PREPARE_FIELDS:
            self.schedule_prepare()
        elif "keyframes" in changed and self.session is not None:
            self._set_controls(controls_for(self.session.controls, self.model.state))
            self.controls_changed.emit(self.controls)
            if self.session.has_latents:
                self._start_latents()

    def _start_latents(self) -> None:
        """Recompute the W+ summary of the current (keyframed) track; a newer edit supersedes it."""
        if self._latents_worker is not None:
            self._latents_worker.cancel()
        session, generation = self.session.with_controls(self.controls), self.generation

        def job(cancel):
            cancel.raise_if_cancelled()
            return session.latent_summary()

        worker = JobWorker(job, name="latents", parent=self)
        worker.finished_ok.connect(
            lambda summary, g=generation: self.latents_changed.emit(summary) if g == self.generation else None)
        worker.finished.connect(lambda w=worker: self._on_latents_done(w))
        self._latents_worker = worker
        worker.start()

    def _on_latents_done(self, worker: JobWorker) -> None:
        worker.deleteLater()
        if worker is self._latents_worker:
            self._latents_worker = None

    def schedule_prepare(self) -> None:
        """Re-run prepare after the debounce (restarting it if the user keeps editing)."""
        self._debounce.start()

    def _start_prepare(self) -> None:
        if self._worker is not None:  # a stale run: cancel it and start again when it has stopped
            self._pending = True
            self._worker.cancel()
            return
        state = self.model.state
        if state.identity is None or state.audio is None:
            self._swap(None)
            return
        worker = JobWorker(lambda cancel: prepare_project(state, cancel=cancel), name="prepare", parent=self)
        worker.progress.connect(self.progress)
        worker.notice.connect(self.notice)
        worker.finished_ok.connect(self._on_prepared)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(lambda w=worker: self._on_worker_done(w))
        self._worker = worker
        self.busy.emit(True)
        worker.start()

    def _on_prepared(self, session: Session) -> None:
        if not self._pending:
            self._swap(session)

    def _on_failed(self, message: str, hint: str) -> None:
        if not self._pending:
            self._swap(None)
            self.problem.emit(message, hint)

    def _on_worker_done(self, worker: JobWorker) -> None:
        worker.deleteLater()
        if worker is not self._worker:
            return
        self._worker = None
        self.busy.emit(False)
        if self._pending:
            self._pending = False
            self._start_prepare()

    def _set_controls(self, controls) -> None:
        self.controls = controls
        self.generation += 1
        self.renderer.set_source(None if controls is None else RenderSource(self.session, controls, self.generation))

    def _swap(self, session: Session | None) -> None:
        self.session = session
        self._set_controls(None if session is None else controls_for(session.controls, self.model.state))
        self.session_changed.emit(session)
        # the new session's arrays and caches are long-lived: keep them out of the GC's scans (without a full
        # collection: that alone held the UI thread 0.19 s per new session)
        freeze_heap(full=False)

    def shutdown(self) -> None:
        """Stop the threads (window closing)."""
        self._debounce.stop()
        for worker in (self._worker, self._latents_worker):
            if worker is not None:
                worker.cancel()
                worker.wait(10000)
        self.renderer.stop()
