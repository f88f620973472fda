"""``ptyrad-core report RESULT.h5 [-o DIR]``: the HTML report of a result file, drawn again.

The report itself (figures, ``report.html``) is written by :mod:`ptyrad_core.observers.report`, the
same code the ``core.figures`` observer runs at every save; this module keeps what only the command
needs: :func:`check_report_targets`, every file the report would write checked before drawing.
"""

from __future__ import annotations

from pathlib import Path

from ptyrad_core.observers.report import FIGURES_DIR, REPORT_NAME, FigureObserver, render_html, write_report

__all__ = [
    "FIGURES_DIR",
    "REPORT_NAME",
    "FigureObserver",
    "check_report_targets",
    "render_html",
    "write_report",
]


def check_report_targets(
    result_path: Path, out_dir: Path | None = None, *, overwrite: bool = False
) -> list[Path]:
    """``ptyrad-core report RESULT [-o DIR]``: check every file the report would write, before drawing.

    The report never writes onto the result file it reads (nor into a folder that is that file).
    ``report.html`` may replace a previous report (recognised by its ``<title>ptyrad_core report``)
    and ``figures/NAME.png`` a previous figure (a PNG written by matplotlib); any other existing
    file there needs ``--overwrite``.

    :return: the files that would be written.
    :raises OutputError: one line naming ``-o`` and the path.
    """
    from ptyrad_core.engine.outputs import check_new_file, same_file
    from ptyrad_core.kernel.errors import OutputError
    from ptyrad_core.observers.report import report_files

    result_path = Path(result_path)
    folder = Path(out_dir) if out_dir is not None else result_path.parent
    what = "-o" if out_dir is not None else "report (next to the result)"
    if folder.exists() and not folder.is_dir():
        if same_file(folder, result_path):
            raise OutputError(
                f"{what}: {str(folder)!r} is the result file this command reads; it is never written to. "
                "Name a folder for figures/ and report.html"
            )
        raise OutputError(f"{what}: {str(folder)!r} is a file, not a folder")
    targets = report_files(folder)
    for target, kind, previous in targets:
        check_new_file(
            target, what, inputs=[result_path], overwrite=overwrite, is_previous_output=previous, kind=kind
        )
    return [target for target, _, _ in targets]
