"""The commands of TAs and course staff: `grader nbgrader build|grade`, `grader batch`, `grader dashboard`, `grader export`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..options import GradingOptions, Limits
from .base import TIER, GraderError, RenamedOptions


@click.group("nbgrader")
def nbgrader_group() -> None:
    """Build the nbgrader course and grade a class (for TAs)."""


QUESTION_TIME_LIMIT_HELP = "Wall-clock seconds the student code of one question may run in the sandbox"
TIME_LIMIT_HELP = "Seconds student training may run per training question (default: the tier's)."
TIER_HELP = "Questions that train a network: quick = small data for a CPU, full = the real data set for a GPU."
STUDENT_HELP = "Only this student (repeatable); the others' grades and files are not touched."


@nbgrader_group.command("build", cls=RenamedOptions, renamed={"--timeout": "--question-time-limit"})
@click.argument("course_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-q", "--question", "questions", multiple=True, help="Only these questions (repeatable; default: all).")
@click.option("--assignment", default="cnn", show_default=True, help="Assignment (and notebook) name.")
@click.option("--course-id", default="cnn-grader", show_default=True, help="nbgrader course id.")
@click.option(
    "--question-time-limit",
    "question_time_limit",
    metavar="SECONDS",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help=QUESTION_TIME_LIMIT_HELP + " at autograde, for this assignment (others keep theirs).",
)
@click.option(
    "--student-package/--no-student-package",
    default=True,
    show_default=True,
    help="Also build the student package (the grader's wheel, no solutions) beside the source notebook, "
    "so generate_assignment hands it out with the notebook (as `grader release`; about 20 seconds).",
)
def nbgrader_build(
    course_dir: Path,
    questions: tuple[str, ...],
    assignment: str,
    course_id: str,
    question_time_limit: int,
    student_package: bool,
) -> None:
    """Write an nbgrader course (config and source notebook) into COURSE_DIR, and the student package.

    Rebuilding keeps your own settings in nbgrader_config.py and the other assignments'
    time limits (changes are listed on stderr)."""
    from ..nbgrader.build import build_course

    try:
        path = build_course(
            course_dir, questions or None, assignment=assignment, course_id=course_id, timeout=question_time_limit
        )
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="--question") from None
    click.echo(f"wrote {course_dir / 'nbgrader_config.py'} and {path}")
    if student_package:
        from ..release.build import release
        from ..release.package import ReleaseError

        try:
            released = release(path.parent, wheel_only=True)
        except ReleaseError as error:
            raise GraderError(str(error)) from None
        click.echo(f"wrote the student package {released.wheel} (students install it; no solutions in it)")
    click.echo(f"next: cd {course_dir} && nbgrader generate_assignment {assignment}")


@nbgrader_group.command("grade", cls=RenamedOptions, renamed={"--to": "--csv"})
@click.argument("course_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("assignment")
@click.option(
    "--collect/--no-collect",
    default=False,
    show_default=True,
    help="Run `nbgrader collect` (exchange) first; otherwise submissions are already in submitted/.",
)
@click.option("--exchange", type=click.Path(file_okay=False, path_type=Path), help="Exchange root for --collect.")
@click.option(
    "--generate/--no-generate",
    default=True,
    show_default=True,
    help="Run `nbgrader generate_assignment --force` first.",
)
@click.option("--feedback/--no-feedback", default=True, show_default=True, help="Write feedback HTML.")
@click.option(
    "--csv",
    "export_to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Grades CSV path (default COURSE_DIR/grades.csv).",
)
@click.option(
    "--regrade",
    is_flag=True,
    help="Autograde again submissions already graded (default: only new or resubmitted ones); with --student, "
    "only those students.",
)
@click.option("--student", "students", multiple=True, metavar="NAME", help=STUDENT_HELP)
@click.option("--tier", type=TIER, default="quick", show_default=True, help=TIER_HELP)
@click.option(
    "--time-limit", "time_limit", type=click.FloatRange(min=1), default=None, metavar="SECONDS", help=TIME_LIMIT_HELP
)
def nbgrader_grade(
    course_dir: Path,
    assignment: str,
    collect: bool,
    exchange: Path | None,
    generate: bool,
    feedback: bool,
    export_to: Path | None,
    regrade: bool,
    students: tuple[str, ...],
    tier: str,
    time_limit: float | None,
) -> None:
    """Autograde ASSIGNMENT in the sandbox, write feedback and grades.csv, print a summary per student and question."""
    from ..nbgrader.grade import (
        StepFailed,
        UnknownStudent,
        check_student_names,
        grade_assignment,
        render_summary,
        summarise,
    )

    try:
        check_student_names(students)
    except UnknownStudent as error:
        raise click.BadParameter(str(error), param_hint="--student") from None
    try:
        outcome = grade_assignment(
            course_dir,
            assignment,
            generate=generate,
            collect=collect,
            exchange=exchange,
            feedback=feedback,
            export_to=export_to,
            regrade=regrade,
            students=students,
            options=GradingOptions.from_env(tier=tier, time_limit=time_limit, plots=None),
            echo=click.echo,
        )
    except StepFailed as error:
        raise GraderError(str(error)) from None
    except UnknownStudent as error:  # a --student without a submission
        raise click.BadParameter(str(error), param_hint="--student") from None
    render_summary(summarise(course_dir, assignment))
    click.echo(f"grades: {outcome.csv}")
    if outcome.dashboard:
        click.echo(f"dashboard: {outcome.dashboard}")
    if outcome.not_graded:
        click.echo(f"not graded by the sandbox: {len(outcome.not_graded)} test cell(s) score 0 until you look at them:")
        for cell in outcome.not_graded:
            click.echo(f"  {cell.describe()}")
    if outcome.failures:  # exit code 1, like cells not graded: submissions that need the TA's attention
        raise click.ClickException("nbgrader could not autograde some submissions: see its log above")
    if outcome.not_graded:  # exit code 1: cells that need the TA's attention, like failed checks
        raise click.ClickException("some test cells were not graded by the sandbox (listed above)")


@click.command(
    "batch",
    cls=RenamedOptions,
    renamed={"--question-timeout": "--question-time-limit"},
    flag_values={"--regrade": "--student"},
)
@click.argument("submissions_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("grading-results"),
    show_default=True,
    help="Results store (results.sqlite), grades.csv, summary and feedback/.",
)
@click.option("-q", "--question", "questions", multiple=True, help="Only these questions (repeatable; default: all).")
@click.option(
    "--workers",
    "-w",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Grading processes on this machine.",
)
@click.option(
    "--regrade",
    is_flag=True,
    help="Grade again submissions already graded (default: only new or changed ones); with --student, only those.",
)
@click.option(
    "--student",
    "students",
    multiple=True,
    metavar="NAME",
    help="Grade only this student (repeatable); the others' results stay as stored, the outputs list the class.",
)
@click.option(
    "--cluster",
    metavar="ADDRESS",
    help="Send the jobs to this Dask scheduler (e.g. tcp://gpu-head:8786) instead of local workers.",
)
@click.option(
    "--question-time-limit",
    "question_time_limit",
    metavar="SECONDS",
    type=click.FloatRange(min=1),
    default=None,
    help=QUESTION_TIME_LIMIT_HELP + " (default: each question's own limit, 60 s for a "
    "structural question; training questions get at least their tier's time limit plus 4 minutes).",
)
@click.option(
    "--memory-mb",
    type=click.IntRange(min=256),
    default=Limits.memory_mb,
    show_default=True,
    help="Memory a question's sandbox may use on top of what the framework maps at import.",
)
@click.option("--assignment", default="cnn", show_default=True, help="Assignment name for the CSV.")
@click.option("--duedate", default="", help="Due date for the CSV (informational).")
@click.option(
    "--roster",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with student_id, first_name, last_name, email.",
)
@click.option("--tier", type=TIER, default="quick", show_default=True, help=TIER_HELP)
@click.option(
    "--time-limit", "time_limit", type=click.FloatRange(min=1), default=None, metavar="SECONDS", help=TIME_LIMIT_HELP
)
@click.option(
    "--hand-grades",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV of the hand-graded written answers: student, question, points (checked against each answer's "
    "points). Without it those points are left out of the totals, marked pending.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (logs, CI).")
def batch_command(
    submissions_dir: Path,
    out_dir: Path,
    questions: tuple[str, ...],
    workers: int,
    regrade: bool,
    students: tuple[str, ...],
    cluster: str | None,
    question_time_limit: float | None,
    memory_mb: int,
    assignment: str,
    duedate: str,
    roster: Path | None,
    tier: str,
    time_limit: float | None,
    hand_grades: Path | None,
    no_progress: bool,
) -> None:
    """Grade every submission in SUBMISSIONS_DIR (a folder per student), sandboxed; resumes where it stopped."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..batch import run_batch
    from ..batch.hand_grades import HandGradesError, read_hand_grades
    from ..questions import get_question

    try:
        ids = [get_question(q).id for q in questions]
    except KeyError as error:
        raise click.BadParameter(error.args[0], param_hint="--question") from None
    try:
        hand = read_hand_grades(hand_grades) if hand_grades else None
    except HandGradesError as error:
        raise click.BadParameter(str(error), param_hint="--hand-grades") from None
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("grading"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=no_progress,
    )
    task = bar.add_task("", total=None)

    def progress(done: int, total: int, student: str) -> None:
        bar.update(task, completed=done, total=total, description=student)

    limits = Limits(wall_s=question_time_limit, memory_mb=memory_mb)
    with bar:
        try:
            report = run_batch(
                submissions_dir,
                out_dir=out_dir,
                questions=ids or None,
                workers=workers,
                regrade=regrade,
                students=students,
                hand_grades=hand,
                cluster=cluster,
                limits=limits,
                assignment=assignment,
                duedate=duedate,
                roster=roster,
                progress=progress,
                options=GradingOptions.from_env(tier=tier, time_limit=time_limit),
            )
        except KeyError as error:
            raise click.BadParameter(error.args[0], param_hint="--student") from None
        except HandGradesError as error:
            raise click.BadParameter(str(error), param_hint="--hand-grades") from None
    click.echo(
        f"graded {len(report.graded)} submission(s) in {report.wall_s:g} s; {len(report.skipped)} already graded "
        f"(--regrade --student NAME grades one again)"
    )
    if report.pending_hand_grading:
        click.echo(
            f"pending hand grading (left out of the totals): {report.pending_hand_grading}; "
            "add them with --hand-grades FILE.csv (student,question,points)"
        )
    if report.interrupted:
        click.echo("interrupted: run the same command again to grade the rest (nothing graded is lost)")
    click.echo(report.summary_path.read_text(), nl=False)
    click.echo(
        f"grades: {report.csv_path}\nfeedback: {report.feedback_dir}/\nresults store: {report.out_dir / 'results.sqlite'}"
    )
    sys.exit(130 if report.interrupted else 0)


@click.command("dashboard")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--duedate", default=None, help="Due date for the late flags (default: the last batch run's).")
def dashboard_command(out_dir: Path, duedate: str | None) -> None:
    """Rebuild OUT_DIR/dashboard.html from OUT_DIR/results.sqlite (what `grader batch --out OUT_DIR` wrote)."""
    from ..dashboard import write_dashboard

    if not (out_dir / "results.sqlite").is_file():
        raise click.UsageError(f"{out_dir} has no results.sqlite: run `grader batch ... --out {out_dir}` first")
    click.echo(f"dashboard: {write_dashboard(out_dir, duedate=duedate)}")


@click.command("export", cls=RenamedOptions, renamed={"--output": "--csv"})
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "lms", type=click.Choice(["canvas", "moodle"]), required=True, help="The LMS to import into.")
@click.option(
    "--roster",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="CSV with student_id, first_name, last_name, email (Canvas: optional canvas_id, sis_login_id, section).",
)
@click.option("--assignment", default="cnn", show_default=True, help="The grade column's (assignment's) name.")
@click.option("--canvas-id", default="", help="Canvas: the assignment's id (without it Canvas creates an assignment).")
@click.option("--per-question", is_flag=True, help="A grade column per question besides the total.")
@click.option(
    "--csv",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV path (default OUT_DIR/<lms>-grades.csv).",
)
def export_command(
    out_dir: Path, lms: str, roster: Path, assignment: str, canvas_id: str, per_question: bool, output: Path | None
) -> None:
    """Write the gradebook CSV that Canvas or Moodle imports, from OUT_DIR/results.sqlite and the roster's ids."""
    from ..batch.lms import export_gradebook
    from ..batch.outputs import read_roster
    from ..batch.store import BatchStore

    if not (out_dir / "results.sqlite").is_file():
        raise click.UsageError(f"{out_dir} has no results.sqlite: run `grader batch ... --out {out_dir}` first")
    store = BatchStore(out_dir / "results.sqlite")
    try:
        question_ids = store.last_run_options().get("questions") or []
        everything = store.results(question_ids or None)
    finally:
        store.close()
    if not question_ids:
        from ..questions import QUESTIONS

        question_ids = [q for q in QUESTIONS if any(q in results for results in everything.values())]
    path = output or out_dir / f"{lms}-grades.csv"
    unknown = export_gradebook(
        path,
        lms,
        everything,
        question_ids,
        read_roster(roster),
        assignment=assignment,
        canvas_id=canvas_id,
        per_question=per_question,
    )
    click.echo(f"{lms} gradebook: {path} ({len(everything)} students)")
    if unknown:
        click.echo(f"not in the roster (names left empty): {', '.join(unknown)}", err=True)
