#!/usr/bin/env bash
# Behavioural tests of tpcomm-run with real processes.
#
#   launcher_test.sh TPCOMM_RUN LAUNCHER_PROBE CASE
#
# Each CASE is one ctest test. Ranks are launcher_probe processes (see
# launcher_probe.cpp for the step language). Time is only checked with coarse
# bounds: ranks that would sleep 60 s must be gone well within 20 s.
set -u

RUN=$1
PROBE=$2
CASE=$3

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tpcomm-launcher-test.XXXXXX") || exit 1
SHM_FILES=()
STATUS=0
ELAPSED_MS=0
LAUNCHER_PID=0
STARTED_MS=0
JOB_NAME=""
JOB_OPTIONS=()
JOB_SCRIPTS=()

cleanup() {
  # Whatever happened, leave no probe running and no file behind.
  local pid_file pid
  for pid_file in "$WORK"/*/rank-*.pid "$WORK"/*/rank-*.orphan; do
    [[ -f $pid_file ]] || continue
    pid=$(<"$pid_file")
    # Only a process that is still a probe: the pid may have been reused.
    if [[ $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") == *launcher_probe* ]]; then
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  if ((LAUNCHER_PID > 0)); then kill -KILL "$LAUNCHER_PID" 2>/dev/null; fi
  if ((${#SHM_FILES[@]} > 0)); then rm -f -- "${SHM_FILES[@]}"; fi
  rm -rf -- "$WORK"
}
trap cleanup EXIT

fail() {
  echo "FAIL [$CASE]: $*" >&2
  local log
  for log in "$WORK"/*.out "$WORK"/*.err; do
    [[ -s $log ]] || continue
    echo "---- ${log##*/} (first 40 lines)" >&2
    head -n 40 "$log" >&2
  done
  exit 1
}

now_ms() { date +%s%3N; }

random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# Splits "NAME [LAUNCHER_OPTION...] -- SCRIPT..." into JOB_NAME, JOB_OPTIONS
# and JOB_SCRIPTS, and creates the directory for the probes' records.
parse_job() {
  JOB_NAME=$1
  shift
  JOB_OPTIONS=()
  while [[ $1 != -- ]]; do
    JOB_OPTIONS+=("$1")
    shift
  done
  shift
  JOB_SCRIPTS=("$@")
  mkdir -p "$WORK/$JOB_NAME"
}

# run_job NAME [LAUNCHER_OPTION...] -- SCRIPT_RANK0 [SCRIPT_RANK1...]
# Runs tpcomm-run in the foreground; its output goes to $WORK/NAME.{out,err},
# the probes' records to $WORK/NAME/.
run_job() {
  parse_job "$@"
  local start
  start=$(now_ms)
  "$RUN" "${JOB_OPTIONS[@]}" "$PROBE" "$WORK/$JOB_NAME" "${JOB_SCRIPTS[@]}" \
    >"$WORK/$JOB_NAME.out" 2>"$WORK/$JOB_NAME.err"
  STATUS=$?
  ELAPSED_MS=$(($(now_ms) - start))
}

# start_job NAME [LAUNCHER_OPTION...] -- SCRIPT...
# Like run_job, but in the background. tpcomm-run starts with SIGINT, SIGTERM
# and SIGHUP at their defaults (a shell starts background jobs with SIGINT
# ignored), unless INHERIT_SIGNALS=1.
start_job() {
  parse_job "$@"
  local launcher=("$PROBE" --default-signals "$RUN")
  if [[ ${INHERIT_SIGNALS:-0} == 1 ]]; then launcher=("$RUN"); fi
  STARTED_MS=$(now_ms)
  "${launcher[@]}" "${JOB_OPTIONS[@]}" "$PROBE" "$WORK/$JOB_NAME" "${JOB_SCRIPTS[@]}" \
    >"$WORK/$JOB_NAME.out" 2>"$WORK/$JOB_NAME.err" &
  LAUNCHER_PID=$!
}

finish_job() {
  wait "$LAUNCHER_PID"
  STATUS=$?
  ELAPSED_MS=$(($(now_ms) - STARTED_MS))
  LAUNCHER_PID=0
}

# wait_for_ready NAME COUNT: until COUNT ranks of job NAME ran their "ready" step.
wait_for_ready() {
  local name=$1 count=$2 waited=0
  while (($(find "$WORK/$name" -name 'rank-*.ready' | wc -l) < count)); do
    ((waited++ < 1000)) || fail "ranks of job $name never became ready"
    sleep 0.01
  done
}

rank_pid() { cat "$WORK/$1/rank-$2.pid"; }

expect_status() {
  ((STATUS == $1)) || fail "tpcomm-run exited with $STATUS, expected $1"
}

# expect_match FILE EXTENDED_REGEX
expect_match() {
  grep -Eq -- "$2" "$1" || fail "no line of ${1##*/} matches: $2"
}

expect_no_match() {
  ! grep -Eq -- "$2" "$1" || fail "a line of ${1##*/} matches: $2"
}

expect_empty() {
  [[ ! -s $1 ]] || fail "${1##*/} is not empty"
}

expect_faster_than() {
  ((ELAPSED_MS < $1 * 1000)) || fail "took ${ELAPSED_MS} ms, expected less than $1 s"
}

# Every rank of job NAME has ended: tpcomm-run waited for all of them.
expect_ranks_gone() {
  local pid_file pid
  for pid_file in "$WORK/$1"/rank-*.pid; do
    pid=$(<"$pid_file")
    if kill -0 "$pid" 2>/dev/null; then
      fail "${pid_file##*/}: process $pid is still alive after tpcomm-run exited"
    fi
  done
}

env_value() { sed -n "s/^$3=//p" "$WORK/$1/rank-$2.env"; }

# ---------------------------------------------------------------------------

case_environment() {
  unset TPCOMM_JOB_ID TPCOMM_TIMEOUT
  # Values left over from an enclosing job must not reach the ranks.
  export TPCOMM_RANK=99 TPCOMM_WORLD_SIZE=99 TPCOMM_LOCAL_RANK=99
  run_job env -n 4 --timeout 2.5 -- exit:0
  expect_status 0
  local rank job_id="" id
  for rank in 0 1 2 3; do
    local file="$WORK/env/rank-$rank.env"
    [[ -f $file ]] || fail "rank $rank did not run"
    expect_match "$file" "^TPCOMM_RANK=$rank\$"
    expect_match "$file" "^TPCOMM_WORLD_SIZE=4\$"
    expect_match "$file" "^TPCOMM_LOCAL_RANK=$rank\$"
    expect_match "$file" "^TPCOMM_LOCAL_WORLD_SIZE=4\$"
    expect_match "$file" "^TPCOMM_TIMEOUT=2\\.5\$"
    (($(grep -c '^TPCOMM_RANK=' "$file") == 1)) || fail "rank $rank has TPCOMM_RANK twice"
    id=$(env_value env "$rank" TPCOMM_JOB_ID)
    [[ $id =~ ^[0-9a-f]{32}$ ]] || fail "rank $rank: job id '$id' is not 32 lowercase hex digits"
    [[ -z $job_id || $id == "$job_id" ]] || fail "rank $rank: job id $id differs from $job_id"
    job_id=$id
  done

  run_job second -n 2 -- exit:0
  expect_status 0
  expect_no_match "$WORK/second/rank-0.env" '^TPCOMM_TIMEOUT='
  id=$(env_value second 0 TPCOMM_JOB_ID)
  [[ $id =~ ^[0-9a-f]{32}$ && $id != "$job_id" ]] || fail "second job reused id or bad id '$id'"

  TPCOMM_JOB_ID=presetjob42 run_job preset -n 2 -- exit:0
  expect_status 0
  for rank in 0 1; do
    [[ $(env_value preset "$rank" TPCOMM_JOB_ID) == presetjob42 ]] ||
      fail "rank $rank did not keep the inherited TPCOMM_JOB_ID"
  done
}

case_success() {
  run_job one -n 1 -- exit:0
  expect_status 0
  expect_empty "$WORK/one.err"

  run_job three -n 3 -- exit:0
  expect_status 0
  expect_empty "$WORK/three.err"
  expect_empty "$WORK/three.out"

  run_job max -n 64 -- exit:0
  expect_status 0
  (($(find "$WORK/max" -name 'rank-*.env' | wc -l) == 64)) || fail "not all 64 ranks ran"
  expect_ranks_gone max
}

case_rank_exit_status() {
  run_job job -n 3 -- ready+sleep:60 ready+await-peers+exit:3 ready+sleep:60
  expect_status 3
  expect_match "$WORK/job.err" "^tpcomm-run: rank 1 \\(pid $(rank_pid job 1)\\) exited with status 3\$"
  # The ranks stopped because of the failure are not reported as failures.
  (($(wc -l <"$WORK/job.err") == 1)) || fail "more than the failing rank was reported"
  expect_ranks_gone job
  expect_faster_than 20
}

case_rank_killed_by_signal() {
  run_job job -n 2 -- ready+sleep:60 ready+await-peers+raise:9
  expect_status 137
  expect_match "$WORK/job.err" \
    "^tpcomm-run: rank 1 \\(pid $(rank_pid job 1)\\) was killed by signal 9 \\(SIGKILL\\)\$"
  expect_ranks_gone job
  expect_faster_than 20
}

case_grace_sigkill() {
  run_job job -n 2 --grace 1 -- ignore-term+ready+sleep:60 ready+await-peers+exit:5
  expect_status 5
  expect_match "$WORK/job.err" "^tpcomm-run: rank 1 \\(pid [0-9]+\\) exited with status 5\$"
  expect_match "$WORK/job.err" \
    "^tpcomm-run: rank 0 \\(pid $(rank_pid job 0)\\) still running 1 s after being asked to stop; sending SIGKILL\$"
  expect_ranks_gone job
  # Rank 0 ignores SIGTERM, so it cannot be gone before the grace period.
  ((ELAPSED_MS >= 900)) || fail "finished after ${ELAPSED_MS} ms, before the 1 s grace period"
  expect_faster_than 20
}

# forward_signal NAME NUMBER: the signal reaches every rank and tpcomm-run
# exits with 128+NUMBER.
forward_signal() {
  local name=$1 number=$2 rank
  start_job recorded -n 3 -- record-signals+ready+sleep:60
  wait_for_ready recorded 3
  kill -s "$name" "$LAUNCHER_PID"
  finish_job
  expect_status $((128 + number))
  expect_match "$WORK/recorded.err" "^tpcomm-run: received signal $number \\(SIG$name\\); stopping all ranks\$"
  for rank in 0 1 2; do
    [[ $(<"$WORK/recorded/rank-$rank.signal") == "$number" ]] ||
      fail "rank $rank did not receive SIG$name"
  done
  expect_ranks_gone recorded
  expect_faster_than 20
}

case_forward_sigterm() {
  forward_signal TERM 15

  # Ranks that do not handle SIGTERM die of it.
  start_job plain -n 2 -- ready+sleep:60
  wait_for_ready plain 2
  kill -TERM "$LAUNCHER_PID"
  finish_job
  expect_status 143
  expect_ranks_gone plain
  expect_faster_than 20
}

case_forward_sigint() {
  forward_signal INT 2
}

case_forward_sighup() {
  forward_signal HUP 1
}

# A signal ignored when tpcomm-run starts (nohup) stays ignored by the job.
case_ignored_signal() {
  trap '' HUP
  INHERIT_SIGNALS=1 start_job job -n 2 -- record-signals+ready+sleep:60
  trap - HUP
  wait_for_ready job 2
  kill -HUP "$LAUNCHER_PID"
  kill -TERM "$LAUNCHER_PID"
  finish_job
  expect_status 143
  local rank
  for rank in 0 1; do
    [[ $(<"$WORK/job/rank-$rank.signal") == 15 ]] ||
      fail "rank $rank got signal $(<"$WORK/job/rank-$rank.signal"), expected only SIGTERM"
  done
}

# The ranks die with tpcomm-run even when it gets no chance to stop them.
case_launcher_killed() {
  start_job job -n 2 -- ready+sleep:60
  wait_for_ready job 2
  kill -KILL "$LAUNCHER_PID"
  finish_job
  expect_status 137
  local rank pid waited
  for rank in 0 1; do
    pid=$(rank_pid job "$rank")
    waited=0
    # The orphaned rank is reaped by init, which may take a moment; a zombie
    # already counts as gone.
    while [[ -e /proc/$pid && $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; do
      ((waited++ < 1000)) || fail "rank $rank (pid $pid) survived tpcomm-run"
      sleep 0.01
    done
  done
  expect_faster_than 20
}

case_tag_output() {
  run_job tagged -n 2 --tag-output -- print:300
  expect_status 0
  # Per rank and stream: lines in order, all tagged, the unterminated last
  # line tagged and terminated, nothing from the other stream.
  # shellcheck disable=SC2016 # an awk program: $0, $1... are awk's, not the shell's
  local check='
    $0 ~ "^\\[[01]\\] " word " [01] [0-9]+$" {
      r = substr($1, 2, 1)
      if ($3 != r || $4 != seen[r] + 0) bad = 1
      seen[r]++
      next
    }
    $0 ~ "^\\[[01]\\] " tailword " [01]$" {
      r = substr($1, 2, 1)
      if ($3 != r || seen[r] != count) bad = 1
      tails[r]++
      next
    }
    { bad = 1; print "unexpected line: " $0 > "/dev/stderr" }
    END { exit !(!bad && seen[0] == count && seen[1] == count && tails[0] == 1 && tails[1] == 1) }'
  awk -v count=300 -v word=line -v tailword=tail "$check" "$WORK/tagged.out" ||
    fail "stdout is not tagged correctly"
  awk -v count=300 -v word=error -v tailword=etail "$check" "$WORK/tagged.err" ||
    fail "stderr is not tagged correctly"

  # A process left behind by a rank keeps the output pipes open; tpcomm-run
  # must finish when the ranks have, not when the pipes close.
  run_job lingering -n 2 --tag-output -- orphan:60+print:3 print:3
  expect_status 0
  awk -v count=3 -v word=line -v tailword=tail "$check" "$WORK/lingering.out" ||
    fail "stdout with a lingering process is not tagged correctly"
  expect_faster_than 20

  # Without --tag-output the ranks write to the same stdout untouched.
  run_job untagged -n 1 -- print:2
  expect_status 0
  [[ $(<"$WORK/untagged.out") == $'line 0 0\nline 0 1\ntail 0' ]] || fail "untagged stdout was changed"
}

case_shm_cleanup() {
  local uid other_job own_job
  uid=$(id -u)
  other_job=$(random_hex)
  local other_file="/dev/shm/tpcomm-$uid-$other_job-x"
  touch "$other_file" || fail "cannot create $other_file"
  SHM_FILES+=("$other_file")

  # Rank 0 creates a segment and crashes, as if it died during start-up.
  run_job crash -n 2 -- shm+raise:9 sleep:60
  expect_status 137
  local segment
  segment=$(<"$WORK/crash/rank-0.shm")
  SHM_FILES+=("$segment")
  [[ $segment == /dev/shm/tpcomm-$uid-* ]] || fail "unexpected segment path $segment"
  [[ ! -e $segment ]] || fail "leftover segment $segment was not removed"
  [[ -e $other_file ]] || fail "the segment of another job was removed"
  expect_match "$WORK/crash.err" '^tpcomm-run: removed 1 leftover shared-memory segment\(s\) of job [0-9a-f]{32}$'

  # Segments are also removed after a successful job, and a job whose id
  # merely begins with this job's id is left alone.
  own_job=$(random_hex)
  local longer_id_file="/dev/shm/tpcomm-$uid-${own_job}0-x"
  touch "$longer_id_file" || fail "cannot create $longer_id_file"
  SHM_FILES+=("$longer_id_file" "/dev/shm/tpcomm-$uid-$own_job-x")
  TPCOMM_JOB_ID=$own_job run_job normal -n 2 -- shm exit:0
  expect_status 0
  [[ ! -e /dev/shm/tpcomm-$uid-$own_job-x ]] || fail "segment of a successful job was not removed"
  [[ -e $longer_id_file ]] || fail "the segment of job ${own_job}0 was removed"
  [[ -e $other_file ]] || fail "the segment of another job was removed"
}

case_exec_failure() {
  "$RUN" -n 2 /nonexistent/tpcomm-no-such-program >"$WORK/missing.out" 2>"$WORK/missing.err"
  STATUS=$?
  expect_status 127
  expect_match "$WORK/missing.err" \
    '^tpcomm-run: cannot execute /nonexistent/tpcomm-no-such-program: No such file or directory$'
  expect_match "$WORK/missing.err" '^tpcomm-run: rank [01] \(pid [0-9]+\) exited with status 127$'
}

# expect_usage_error ARG...: tpcomm-run rejects the arguments with status 2.
expect_usage_error() {
  "$RUN" "$@" >"$WORK/usage.out" 2>"$WORK/usage.err"
  STATUS=$?
  ((STATUS == 2)) || fail "tpcomm-run $* exited with $STATUS, expected 2"
  expect_match "$WORK/usage.err" '^tpcomm-run: '
  expect_match "$WORK/usage.err" '^Usage: tpcomm-run -n N '
  expect_empty "$WORK/usage.out"
}

case_bad_arguments() {
  local marker="$WORK/started"
  local program=(touch "$marker")
  expect_usage_error
  expect_usage_error "${program[@]}"
  expect_usage_error -n
  expect_usage_error -n 0 "${program[@]}"
  expect_usage_error -n 65 "${program[@]}"
  expect_usage_error -n -1 "${program[@]}"
  expect_usage_error -n two "${program[@]}"
  expect_usage_error -n 2x "${program[@]}"
  expect_usage_error -n 2
  expect_usage_error -n 2 --
  expect_usage_error --bogus -n 2 "${program[@]}"
  expect_usage_error -n 2 -x "${program[@]}"
  expect_usage_error -n 2 --timeout "${program[@]}"
  expect_usage_error -n 2 --timeout 0 "${program[@]}"
  expect_usage_error -n 2 --timeout abc "${program[@]}"
  expect_usage_error -n 2 --grace -1 "${program[@]}"
  expect_usage_error -n 2 --tag-output=yes "${program[@]}"
  [[ ! -e $marker ]] || fail "a rank was started despite a usage error"

  local option
  for option in -h --help; do
    "$RUN" "$option" >"$WORK/help.out" 2>"$WORK/help.err"
    STATUS=$?
    expect_status 0
    expect_match "$WORK/help.out" '^Usage: tpcomm-run -n N \[--tag-output\] \[--timeout S\] \[--grace S\] \[--\] PROGRAM \[ARGS...\]$'
    expect_empty "$WORK/help.err"
  done
}

if ! declare -F "case_$CASE" >/dev/null; then
  fail "unknown test case '$CASE'"
fi
"case_$CASE"
echo "PASS [$CASE]"
