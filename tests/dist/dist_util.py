"""What the whole-run tests of tests/dist share: the environment every rank runs in (one thread,
OpenMPI allowed as root, no LeakSanitizer in MPI processes), running `zotune train` in one
process or under mpirun, comparing two runs' files byte for byte, watching a run's log, stopping
one rank of a job with a signal, the demo model made 4 layers deep, and the ok/FAIL tally that
each script ends with. Imported by the scripts next to it (python puts their directory on
sys.path)."""
import fcntl
import filecmp
import json
import os
import shutil
import signal
import struct
import subprocess
import time

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
MPI_ARGS = ["--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,vader,tcp"]
# Under the sanitizer build, processes that initialise MPI keep LeakSanitizer off: OpenMPI's
# plugins allocate at MPI_Init and are unloaded at MPI_Finalize, so their blocks are reported
# with "<unknown module>" frames no suppression can name. ASan and UBSan stay on; one-process
# runs (no MPI) keep leak checking.
MPI_ENV = dict(ENV)
if "ASAN_OPTIONS" in MPI_ENV:
    MPI_ENV["ASAN_OPTIONS"] += ":detect_leaks=0"
# The sanitizer build (ZT_DIST_QUICK=1, tests/dist/meson.build) runs one rank count or layout
# per case: instrumented ranks are several times slower, and the counts exercise the same code.
QUICK = os.environ.get("ZT_DIST_QUICK") == "1"
# What two runs that should be the same run must hold byte for byte.
RUN_FILES = ("steplog.jsonl", "model.safetensors")

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what, flush=True)
    if not ok:
        failures.append(what)


def finish(tmp=None):
    """Prints the tally; removes tmp when every check passed (a failure leaves it to look at).
    Returns the exit status."""
    print(f"{len(failures)} failed")
    if tmp and not failures:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


class Runner:
    """`zotune train` runs of one binary, in one process or over mpirun's ranks."""

    def __init__(self, zotune, mpirun=None):
        self.zotune, self.mpirun = zotune, mpirun

    def command(self, out, args, ranks=None, quiet=True):
        cmd = [self.zotune, "train", "--output", out, "--threads", "1"] + (
            ["--quiet"] if quiet else []) + args
        return [self.mpirun, "-np", str(ranks)] + MPI_ARGS + cmd if ranks is not None else cmd

    def train(self, out, args, ranks=None, timeout=300, quiet=True):
        """Runs to the end; returns (exit status, stderr)."""
        p = subprocess.run(self.command(out, args, ranks, quiet),
                           env=MPI_ENV if ranks is not None else ENV, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        return p.returncode, p.stderr

    def stop_midway(self, out, args, ranks, lines, sig, victim=-1, label=""):
        """Starts a run over `ranks` (None: one process, no mpirun) and sends `sig` to one of
        its ranks (by position among mpirun's children, the last by default; the process
        itself without mpirun) once the log holds `lines` lines. Returns the job's exit status
        (None if it had to be killed after 90 s), the seconds it took to end after the signal,
        its stderr, and the signalled rank's OMPI_COMM_WORLD_RANK (None if no rank was found,
        or without mpirun). label prefixes the check that every rank was found."""
        job = subprocess.Popen(self.command(out, args, ranks),
                               env=MPI_ENV if ranks is not None else ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
        deadline = time.time() + 120
        while log_lines(out) < lines and time.time() < deadline and job.poll() is None:
            time.sleep(0.05)
        if ranks is None:
            pids = [str(job.pid)] if job.poll() is None else []
        else:
            pids = subprocess.run(["pgrep", "-P", str(job.pid), "-f", "zotune"],
                                  stdout=subprocess.PIPE, text=True).stdout.split()
            check(len(pids) == ranks, f"{label}found the {ranks} ranks ({pids})")
        pid, world_rank = (int(pids[victim]), None) if pids else (None, None)
        if pid and ranks is None:
            os.kill(pid, sig)
        elif pid:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
                world_rank = int(env[b"OMPI_COMM_WORLD_RANK"])
            except (OSError, KeyError, ValueError):
                pass
            os.kill(pid, sig)
        sent = time.time()
        try:
            _, err = job.communicate(timeout=90)
            rc = job.returncode
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            _, err = job.communicate()
            rc = None
        # mpirun can return while a rank is still exiting (and holding the output's lock): the
        # job has ended only when every rank has, so wait for them, up to 60 s after the signal.
        while any(process_alive(int(p)) for p in pids) and time.time() - sent < 60 \
                and sig != signal.SIGSTOP:
            time.sleep(0.05)
        took = time.time() - sent
        # What a resume needs: the output's lock free (dropped when the last thread holding the
        # writer's files exits).
        while not lock_free(out) and time.time() - sent < 60 and sig != signal.SIGSTOP:
            time.sleep(0.05)
        if sig == signal.SIGSTOP and pid:  # mpirun ends its ranks; this one only if it did not
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return rc, took, err, world_rank


def same_files(a, b, files):
    """Do directories a and b hold the same bytes in each of files (paths under them)?"""
    try:
        return all(filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False)
                   for f in files)
    except OSError:
        return False


def same_run(a, b):
    return same_files(a, b, RUN_FILES)


def process_alive(pid):
    """Whether any thread of process pid still runs. A process whose threads have all exited is
    a zombie until whoever adopted it reaps it, which may be late; but a zombie thread-group
    leader can also have threads still exiting (an OpenMP worker, a sanitizer's thread at exit),
    and those still hold the process's files, the output's lock among them. So every thread
    counts, and only when all are zombies (or gone) has the process ended."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
                    return True
        except (OSError, IndexError):
            continue
    return False


def lock_free(out):
    """Whether no process holds the output directory's lock (src/core/dir_lock.c's flock)."""
    try:
        fd = os.open(os.path.join(out, ".zotune.lock"), os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def log_lines(out):
    try:
        with open(os.path.join(out, "steplog.jsonl"), "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def deepen(src, dst):
    """The demo model with 4 layers instead of 2 (layers 2 and 3 copy 1 and 0), so 3 and 4
    stages each get a layer: an ordinary model directory, written as safetensors."""
    shutil.copytree(src, dst)
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    tensors = {k: (v, data[v["data_offsets"][0]:v["data_offsets"][1]])
               for k, v in header.items() if k != "__metadata__"}
    for new, old in ((2, 1), (3, 0)):
        for k, v in list(tensors.items()):
            prefix = f"model.decoder.layers.{old}."
            if k.startswith(prefix):
                tensors[f"model.decoder.layers.{new}." + k[len(prefix):]] = v
    out_header, blobs, at = {}, [], 0
    if "__metadata__" in header:
        out_header["__metadata__"] = header["__metadata__"]
    for k in sorted(tensors):
        info, blob = tensors[k]
        out_header[k] = {"dtype": info["dtype"], "shape": info["shape"],
                         "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(out_header).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(dst, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["num_hidden_layers"] = 4
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f)


def safetensors_header(path):
    """The JSON header of a safetensors file (names, dtypes, shapes, offsets)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))
