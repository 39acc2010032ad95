#!/usr/bin/env bash
# Builds lanchat_<version>_<arch>.deb offline, by hand (dpkg-deb, no tauri-cli):
# /usr/bin/lanchat and /usr/bin/lanchat-node (the headless node, which `lanchat serve`
# executes), the desktop entry, the icon, the copyright file; Depends computed
# by dpkg-shlibdeps from the binary.
#
#   scripts/build-deb.sh                 release build (UI + `cargo build --release`), xz
#   scripts/build-deb.sh --binary PATH   package an already built lanchat, and the
#                                        lanchat-node beside it (CI uses the debug
#                                        ones: no release build on every commit)
#   --out DIR                            where the .deb goes (default: <target>/deb)
#
# Install with `sudo apt install ./lanchat_<version>_<arch>.deb`.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=""
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "build-deb: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

target_dir=${CARGO_TARGET_DIR:-target}
out=${out:-$target_dir/deb}
version=$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version = / { print $2; exit }' Cargo.toml)
arch=$(dpkg --print-architecture)

if [ -z "$binary" ]; then
  scripts/build-ui.sh
  cargo build --release -p lanchat -p lanchat-node
  binary="$target_dir/release/lanchat"
  compress=(-Zxz)
else
  # Speed over size for a package that is installed once and thrown away (CI).
  compress=(-Zgzip -z1)
fi
[ -x "$binary" ] || { echo "build-deb: $binary is not an executable" >&2; exit 1; }
node_binary="$(dirname "$binary")/lanchat-node"
[ -x "$node_binary" ] || { echo "build-deb: $node_binary (beside $binary) is not an executable" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/applications" \
  "$root/usr/share/icons/hicolor/256x256/apps" "$root/usr/share/doc/lanchat"
strip --strip-all -o "$root/usr/bin/lanchat" "$binary"
strip --strip-all -o "$root/usr/bin/lanchat-node" "$node_binary"
chmod 0755 "$root/usr/bin/lanchat" "$root/usr/bin/lanchat-node"
install -m 0644 packaging/lanchat.desktop "$root/usr/share/applications/lanchat.desktop"
install -m 0644 src-tauri/icons/icon.png "$root/usr/share/icons/hicolor/256x256/apps/lanchat.png"
install -m 0644 packaging/copyright "$root/usr/share/doc/lanchat/copyright"

# dpkg-shlibdeps wants a debian/control beside it; a minimal one in the work dir does.
mkdir -p "$work/shlibs/debian"
printf 'Source: lanchat\n\nPackage: lanchat\nArchitecture: any\n' >"$work/shlibs/debian/control"
depends=$(cd "$work/shlibs" && dpkg-shlibdeps -O -e "$root/usr/bin/lanchat" -e "$root/usr/bin/lanchat-node" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }
size_kb=$(du -sk "$root/usr" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: lanchat
Version: $version
Architecture: $arch
Maintainer: lanchat developers <noreply@lanchat.invalid>
Installed-Size: $size_kb
Depends: $depends
Section: net
Priority: optional
Description: serverless LAN messenger
 Every desktop is a node: colleagues find each other by signed UDP broadcast,
 talk over encrypted links and keep their chats locally. "lanchat" opens the
 window, "lanchat serve" runs headless (as lanchat-node, without the window's
 libraries), and "lanchat status", "lanchat peers" and "lanchat send" talk to
 the running node from scripts.
EOF

mkdir -p "$out"
deb="$out/lanchat_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >/dev/null
echo "$deb"
