"""Driving ImageJ's menus and dialogs from Python as a user does with mouse and keyboard.

A menu command runs in its own thread (``IJ.doCommand``, as a menu click does), so that the
Macro Recorder records it; its GenericDialog is found among the open windows, filled and
confirmed on the AWT event thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jpype

from ijseg.ij import jclass


def on_event_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on the AWT event dispatch thread and wait for it."""
    errors: list[BaseException] = []

    def run():
        try:
            fn()
        except BaseException as err:  # re-raised in the caller's thread
            errors.append(err)

    jclass("java.awt.EventQueue").invokeAndWait(jpype.JProxy("java.lang.Runnable", dict(run=run)))
    if errors:
        raise errors[0]


def wait_for_window(kind: str, title: str | None = None, timeout: float = 60.0):
    """The first showing window of Java class ``kind`` (and ``title``), waiting for it."""
    cls = jclass(kind)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in jclass("java.awt.Window").getWindows():
            if isinstance(w, cls) and w.isShowing() and (title is None or str(w.getTitle()) == title):
                return w
        time.sleep(0.05)
    raise TimeoutError(f"no {kind} window {title or ''} appeared within {timeout:g} s")


def wait_until_done(command_thread_name: str, timeout: float = 120.0) -> None:
    """Wait until the thread running a menu command (named after the command) has ended."""
    thread = jclass("java.lang.Thread")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(str(t.getName()) == command_thread_name for t in thread.getAllStackTraces().keySet()):
            return
        time.sleep(0.05)
    raise TimeoutError(f"menu command {command_thread_name!r} still running after {timeout:g} s")


def fill_dialog(title: str, *, strings: dict[str, str] | None = None, numbers: dict[str, float] | None = None,
                choices: dict[str, str] | None = None, checkboxes: dict[str, bool] | None = None,
                uncheck_others: bool = False) -> None:
    """Fill the GenericDialog ``title`` by field label (as shown, without the colon) and press OK;
    ``uncheck_others`` clears the checkboxes not named (ImageJ remembers them between uses)."""
    gd = wait_for_window("ij.gui.GenericDialog", title)
    labels = _labels(gd)

    def fill():
        for values, fields in ((strings, gd.getStringFields()), (numbers, gd.getNumericFields())):
            for label, value in (values or {}).items():
                field = _field(fields, labels, label, title)
                field.setText(str(value))
        for label, value in (choices or {}).items():
            _field(gd.getChoices(), labels, label, title).select(value)
        if uncheck_others:
            for box in gd.getCheckboxes() or []:
                box.setState(False)
        for label, value in (checkboxes or {}).items():
            boxes = [b for b in (gd.getCheckboxes() or []) if str(b.getLabel()).startswith(label)]
            if not boxes:
                raise KeyError(f"{title}: no checkbox {label!r}")
            boxes[0].setState(bool(value))
        ok = gd.getButtons()[0]
        gd.actionPerformed(jclass("java.awt.event.ActionEvent")(ok, 1001, str(ok.getLabel())))

    on_event_thread(fill)


def _descendants(component):
    yield component
    if isinstance(component, jclass("java.awt.Container")):
        for child in component.getComponents():
            yield from _descendants(child)


def _labels(gd) -> list[tuple[str, object]]:
    """(label text, the component right after it) for each labelled field of a dialog."""
    label_cls = jclass("java.awt.Label")
    comps = list(_descendants(gd))
    out = []
    for i, c in enumerate(comps[:-1]):
        if isinstance(c, label_cls):
            text = str(c.getText()).strip().rstrip(":")
            nxt = next((d for d in comps[i + 1:] if not isinstance(d, jclass("java.awt.Panel"))), None)
            out.append((text, nxt))
    return out


def _field(fields, labels, label: str, title: str):
    fields = list(fields or [])
    for text, comp in labels:
        if text.startswith(label):
            for f in fields:
                if f.equals(comp):
                    return f
    raise KeyError(f"{title}: no field labelled {label!r} (labels: {[t for t, _ in labels]})")
