#!/usr/bin/env python3
"""gen_manpage.py SIAMIDX OUTDIR - siamidx(1) and the bash completion, from the help texts.

Runs `SIAMIDX --help` for the commands and `SIAMIDX COMMAND --help` for each one,
and writes OUTDIR/siamidx.1 (man(7) roff) and OUTDIR/siamidx.bash-completion.
Run by CMake at build time (the help texts are the one source: a new option in
a command's --help is in the man page and the completion with the next build).

The parser is lenient on purpose: a command line is "  NAME  SUMMARY" under
"commands:"; a command's options are every --long-name (and -x short name) its
help text mentions, in usage lines ("[--json]") or option lines
("  -i, --index DIR   description"), whichever format the help uses.
"""
import re
import subprocess
import sys


def run_help(binary, *args):
    r = subprocess.run([binary, *args, "--help"], capture_output=True, text=True, errors="replace")
    if r.returncode != 0:
        sys.exit(f"gen_manpage: {binary} {' '.join(args)} --help exited {r.returncode}: {r.stderr}")
    return r.stdout


def commands(main_help):
    out, inside = [], False
    for line in main_help.splitlines():
        if line.strip().lower().startswith("commands"):
            inside = True
            continue
        if inside:
            m = re.match(r"^\s{2,}([a-z][a-z0-9-]*)\s+(.*\S)", line)
            if m:
                out.append((m.group(1), m.group(2)))
            elif line.strip() == "" and out:
                inside = False
    if not out:
        sys.exit("gen_manpage: no commands found in the main --help")
    return out


def options(text):
    """Long options (sorted, --help added) and short ones, as the help names them."""
    longs = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    shorts = set(re.findall(r"(?<![\w-])-[a-zA-Z](?![\w-])", text))
    longs.add("--help")
    return sorted(longs), sorted(shorts)


def roff_text(s):
    """A line of preformatted text for roff: backslashes escaped, no control line."""
    s = s.replace("\\", "\\e").replace("-", "\\-")
    if s.startswith((".", "'")):
        s = "\\&" + s
    return s


def man_page(main_help, cmds, helps, version):
    w = [f'.TH SIAMIDX 1 "" "siamidx {version}" "User Commands"',
         ".SH NAME",
         "siamidx \\- which artist painted this: embeddings, an index and a Siamese head",
         ".SH SYNOPSIS",
         ".B siamidx",
         ".I COMMAND",
         "[\\fIOPTIONS\\fR] ...",
         ".br",
         ".B siamidx",
         ".I COMMAND",
         ".B \\-\\-help",
         ".SH DESCRIPTION",
         "siamidx tells whether two paintings are by the same artist, and which artists most",
         "likely painted a given picture: a ResNet encoder turns images into embeddings, an index",
         "(LMDB with a FAISS vector index) holds the paintings, and a Siamese head scores pairs.",
         "This page is generated from the help texts of the commands below.",
         ".SH COMMANDS"]
    for name, summary in cmds:
        w += [".TP", f".B {name}", roff_text(summary)]
    for name, _ in cmds:
        w += [f'.SH "{name.upper()}"', ".nf"]
        w += [roff_text(line) for line in helps[name].rstrip("\n").splitlines()]
        w += [".fi"]
    w += [".SH ENVIRONMENT",
          ".TP", ".B SIAMIDX_INDEX", "the index when no \\fB\\-i\\fR is given (else ./siamidx.idx)",
          ".TP", ".B SIAMIDX_MODEL", "the model when no \\fB\\-m\\fR is given (else the installed default model)",
          ".TP", ".B SIAMIDX_CPU",
          "the convolution kernels, read when a model loads: auto (the default: avx512 where the CPU has it, "
          "else avx2), avx512, avx2, or blas (im2col and OpenBLAS); a kernel the CPU lacks is refused",
          ".TP", ".B SIAMIDX_WINOGRAD",
          "Winograd for the 3x3 stride\\-1 convolutions, read when a model loads: 4 (the default, F(4x4,3x3)), "
          "2 (F(2x2,3x3)) or 0 (off)",
          ".SH EXIT STATUS",
          "0 success, 1 failure, 2 usage error, 3 some inputs failed and the rest were processed,",
          "130 interrupted after keeping the work done.",
          ".SH SEE ALSO",
          "The README and docs/ of the siamidx sources."]
    return "\n".join(w) + "\n"


def completion(cmds, opts):
    cases = []
    for name, _ in cmds:
        longs, shorts = opts[name]
        cases.append(f"        {name}) opts=\"{' '.join(longs + shorts)}\" ;;")
    names = " ".join(n for n, _ in cmds)
    return f"""# bash completion for siamidx -- generated from the help texts by tools/gen_manpage.py
_siamidx() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} cmd=${{COMP_WORDS[1]}} opts
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "{names} --help --version" -- "$cur"))
        return
    fi
    case $cmd in
{chr(10).join(cases)}
        *) opts="" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur")) # images, collections, index folders
    fi
}}
complete -o filenames -F _siamidx siamidx
"""


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, outdir = sys.argv[1], sys.argv[2]
    main_help = run_help(binary)
    cmds = commands(main_help)
    helps = {n: run_help(binary, n) for n, _ in cmds}
    opts = {n: options(helps[n]) for n, _ in cmds}
    v = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    version = v[-1] if v else ""
    with open(f"{outdir}/siamidx.1", "w") as f:
        f.write(man_page(main_help, cmds, helps, version))
    with open(f"{outdir}/siamidx.bash-completion", "w") as f:
        f.write(completion(cmds, opts))


if __name__ == "__main__":
    main()
