"""One function per user task: what the command line calls, and what notebooks call.

Each workflow chooses directions, spans, snapshots and settings, calls the compute layer and
returns a typed result (save it with :func:`weightspace.save`); none parses arguments or
writes anything but the runs and results its task is about.

==========================  ==========================================  ======================
workflow                    task                                        command
==========================  ==========================================  ======================
:func:`surface_around`      2-D landscape around a run, runs drawn on   ``weightspace surface``
:func:`line_between`        1-D profile: start to end, run to run       ``weightspace line``
:func:`connect_runs`        between two solutions: aligned line, curve  ``weightspace connect``
:func:`curves_of_runs`      loss and accuracy along runs (test data)    ``weightspace curves``
:func:`project_runs`        joint projection, null test, path metrics   ``weightspace project``
:func:`spectrum_of_run`     Hessian spectra at snapshots / on a line    ``weightspace spectrum``
:func:`sample_around`       jump and retrain, projected jointly         ``weightspace sample``
:func:`report`              one HTML page from results                  ``weightspace report``
:func:`run_demo`            the main job on the embedded data           ``weightspace demo``
==========================  ==========================================  ======================
"""

from ._endpoints import EndpointAlignment
from ._runs import select_indices
from .connect import connect_runs
from .curves import curves_of_runs
from .demo import DemoSummary, run_demo
from .line import line_between
from .project import project_runs
from .report import find_results, report
from .sample import projection_path, sample_around
from .spectrum import spectrum_of_run
from .surface import surface_around

__all__ = [
    "DemoSummary",
    "EndpointAlignment",
    "connect_runs",
    "curves_of_runs",
    "find_results",
    "line_between",
    "project_runs",
    "projection_path",
    "report",
    "run_demo",
    "sample_around",
    "select_indices",
    "spectrum_of_run",
    "surface_around",
]
