# Sourced by the scripts: picks a Python 3.11+ interpreter into $PYTHON.
for candidate in python3.11 python3.12 python3.13 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    PYTHON=$(command -v "$candidate")
    break
  fi
done
if [ -z "${PYTHON:-}" ]; then
  echo "relaykit needs Python 3.11 or newer" >&2
  exit 1
fi
