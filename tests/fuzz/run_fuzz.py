"""One fuzz test: replay the committed corpus, then fuzz for a bounded time.

usage: run_fuzz.py HARNESS CORPUS_DIR DICT WORK_DIR

Phase 1 runs every committed input once (libFuzzer -runs=0): a regression there is a bug that
was fixed coming back. Phase 2 fuzzes for ZT_FUZZ_SECONDS (default 15; 0 skips it) from a fresh
copy of the corpus under WORK_DIR, so the source tree is never written; crashes, leaks, timeouts
and out-of-memory inputs land in WORK_DIR as libFuzzer artifacts and fail the test. The last
line (also WORK_DIR/summary.txt) gives the executions and findings, which CI reports per harness.
"""
import os
import re
import shutil
import subprocess
import sys

ARTIFACT = re.compile(r'^(crash|leak|timeout|oom|slow-unit)-')
EXECUTED = re.compile(r'stat::number_of_executed_units:\s*(\d+)')


def run(cmd):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors='replace')
    return proc.returncode, proc.stdout


def executed(output):
    counts = EXECUTED.findall(output)
    return int(counts[-1]) if counts else 0


def report(work, line):
    print(line)
    with open(os.path.join(work, 'summary.txt'), 'w') as f:  # for CI to collect, one per harness
        f.write(line + '\n')


def main():
    harness, corpus, dictionary, work = sys.argv[1:5]
    name = os.path.basename(harness)
    seconds = int(os.environ.get('ZT_FUZZ_SECONDS', '15'))
    # A sanitizer report must stop the input, or libFuzzer would not see it as a finding.
    os.environ['UBSAN_OPTIONS'] = ('halt_on_error=1:abort_on_error=1:print_stacktrace=1:' +
                                   os.environ.get('UBSAN_OPTIONS', ''))
    common = ['-print_final_stats=1', '-timeout=10', '-rss_limit_mb=2048']
    if os.path.exists(dictionary):
        common.append('-dict=' + dictionary)

    shutil.rmtree(work, ignore_errors=True)
    scratch = os.path.join(work, 'corpus')
    shutil.copytree(corpus, scratch)
    artifacts = os.path.join(work, 'artifacts') + os.sep
    os.makedirs(artifacts)
    common.append('-artifact_prefix=' + artifacts)

    n_inputs = len(os.listdir(corpus))
    rc, out = run([harness, '-runs=0'] + common + [scratch])
    replayed = executed(out)
    if rc != 0:
        sys.stdout.write(out)
        report(work, f'{name}: replaying {n_inputs} corpus inputs FAILED (exit {rc})')
        return 1

    fuzzed, seed = 0, ''
    if seconds > 0:
        cmd = [harness, f'-max_total_time={seconds}'] + common + [scratch]
        if os.environ.get('ZT_FUZZ_SEED'):
            cmd.append('-seed=' + os.environ['ZT_FUZZ_SEED'])
        rc, out = run(cmd)
        fuzzed = executed(out)
        found = re.search(r'Seed: (\d+)', out)
        seed = found.group(1) if found else '?'
    findings = sorted(f for f in os.listdir(artifacts) if ARTIFACT.match(f))
    if rc != 0 or findings:
        sys.stdout.write(out)
        for f in findings:
            print('finding: ' + os.path.join(artifacts, f))
    summary = (f'{name}: replayed {n_inputs} corpus inputs ({replayed} executions), fuzzed '
               f'{seconds} s (seed {seed}): {fuzzed} executions, {len(findings)} findings, exit {rc}')
    report(work, summary)
    return 1 if rc != 0 or findings else 0


if __name__ == '__main__':
    sys.exit(main())
