#!/usr/bin/env bash
# The quickstart through Ray with and without the one-worker collective skip (suite/learner/dist.py,
# commit e66fefc), alternating, two runs each: wall time, first epoch line, median train img/s.
# Usage: bash bench/experiments/one-worker-collectives/ab.sh  (from the repository root, venv in .venv)
set -euo pipefail
repo=$(pwd); py=$repo/.venv/bin/python
old=$(mktemp -d); out=$(mktemp -d)
git archive HEAD | tar -x -C "$old"
git show e66fefc~1:suite/learner/dist.py > "$old/suite/learner/dist.py"
stamp='import subprocess,sys,time
t=time.time(); p=subprocess.Popen(sys.argv[1:],stdout=subprocess.PIPE,stderr=subprocess.STDOUT,text=True)
for line in p.stdout: print(f"{time.time()-t:7.1f} {line}",end="")
print(f"{time.time()-t:7.1f} EXIT {p.wait()}")'
for i in 1 2; do
  for v in before after; do
    tree=$repo; [ $v = before ] && tree=$old
    rm -rf "$out/runs"
    (cd "$tree" && $py -c "$stamp" $py suite/run.py configs/quickstart.yaml --output-basedir "$out/runs" > "$out/$v$i.log")
    med=$(grep "train    epoch" "$out/$v$i.log" | grep -o "[0-9]* img/s" | awk '{print $1}' | sort -n |
          awk '{a[NR]=$1} END{print a[int(NR/2)+1]}')
    echo "| $v | $i | $(tail -1 "$out/$v$i.log" | awk '{print $1}') | $(grep -m1 ' epoch 1/' "$out/$v$i.log" | awk '{print $1}') | $med |"
  done
done
rm -rf "$old" "$out"
