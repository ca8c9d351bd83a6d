# airlock's Go starter: builds the user's main package and runs it, as `go run` would.
#
# The agent starts it as the sandbox user (bash start-go.sh SCRIPT [--preload]), and:
#   fd 3  lines from the agent: "P<seed>" prepare (any number of times), then "G<seed>" go, or
#         "E<seed>": go, taking the run's environment from /run/airlock/env first
#   fd 4  we write "R" once we wait, and after each prepare
#
# It calls the compiler and the linker itself, with an import configuration naming every package
# of the standard library as Debian ships it compiled (go-importcfg, written by rootfs.sh):
# under emulation the go command's own work (module resolution, staleness checks over the
# standard library's sources, the build cache) costs more than compiling. The code is package
# main; .go files the request put in /work (not *_test.go) are compiled with it. Only the
# standard library can be imported: there is no module cache and no network (GOPROXY=off).
#
# With --preload (the VM a snapshot is made from) the compiler and the linker are read once, so
# that their pages are in the snapshot's page cache. Nothing is built ahead: on tcg a build in a
# restored VM pays about 1 s for translating the compiler, but building at each prepare would
# cost every pooled VM of every server 2 s of CPU, go used or not. The linker leaves out the
# symbol table and DWARF (-s -w: 0.7 s instead of 1.8 s on tcg); panics still print their stack.
set -u
script=$1
tools=/usr/lib/go-1.19/pkg/tool/linux_amd64
importcfg=/usr/lib/airlock/go-importcfg
build=/tmp/.airlock-go

# build OUT SOURCE...: compiles the sources as package main and links OUT; the tools' messages
# (which the compiler prints on stdout) go to stderr, as `go build` has them.
build() {
  local out=$1
  shift
  mkdir -p "$build" &&
    "$tools/compile" -p main -complete -lang=go1.19 -importcfg "$importcfg" -pack \
      -o "$out.a" "$@" >&2 &&
    "$tools/link" -s -w -importcfg "$importcfg" -buildmode=exe -o "$out" "$out.a" >&2
}

warm_up() {
  cat "$tools/compile" "$tools/link" >/dev/null
}

[ "${2:-}" = --preload ] && warm_up >/dev/null 2>&1
printf R >&4
while :; do
  read -r line <&3 || exit 125
  case $line in [GE]*) break ;; esac
  printf R >&4
done
exec 3<&- 4>&-
case $line in E*) set -a; . /run/airlock/env; set +a ;; esac
unset line

shopt -s nullglob
sources=("$script")
for f in /work/*.go; do
  case $f in *_test.go) ;; *) sources+=("$f") ;; esac
done
build "$build/main" "${sources[@]}" || exit 2 # as `go build` ends a failed build
unset -f build warm_up
unset script tools importcfg sources f
exec "$build/main"
