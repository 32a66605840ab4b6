#!/usr/bin/env bash
# Installs what the real-VS-Code suites need, with apt and npm only:
#   - Debian's chromium (the browser playwright-core drives), ripgrep, and the tools code-server's
#     native modules build with;
#   - code-server 4.100.3 (VS Code 1.100.3, the last release that installs on Node 20) from npm,
#     OUTSIDE the repository (~300 MB), in $LORA_SYNC_CODE_SERVER_HOME
#     (default ~/.cache/lora-sync/code-server; test/support/codeServer.ts looks there too).
# Idempotent: does nothing that is already done.
set -euo pipefail
VERSION=4.100.3
HOME_DIR="${LORA_SYNC_CODE_SERVER_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/lora-sync/code-server}"
export DEBIAN_FRONTEND=noninteractive

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v rg >/dev/null 2>&1 || need+=(ripgrep)
command -v make >/dev/null 2>&1 && command -v g++ >/dev/null 2>&1 || need+=(build-essential)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -e /usr/include/gssapi/gssapi.h ] || need+=(libkrb5-dev)
# Fonts, so screenshots show words and the emoji in folder names rather than boxes.
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core)
fc-list 2>/dev/null | grep -qi emoji || need+=(fonts-noto-color-emoji)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "install-code-server: need root for apt-get install ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -x "$HOME_DIR/node_modules/.bin/code-server" ] && "$HOME_DIR/node_modules/.bin/code-server" --version 2>/dev/null | grep -q "^$VERSION"; then
  echo "code-server $VERSION already in $HOME_DIR"
  exit 0
fi
mkdir -p "$HOME_DIR/tmp"
cd "$HOME_DIR"
[ -f package.json ] || echo '{"name":"lora-sync-code-server","private":true}' > package.json
# @vscode/ripgrep's postinstall downloads a binary unless its cache already holds one: give it Debian's rg.
export TMPDIR="$HOME_DIR/tmp"
mkdir -p "$TMPDIR/vscode-ripgrep-cache-1.15.11"
tar czf "$TMPDIR/vscode-ripgrep-cache-1.15.11/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$(dirname "$(command -v rg)")" rg
export npm_config_unsafe_perm=true npm_config_yes=true
npm install --no-audit --no-fund --loglevel=error "code-server@$VERSION"
"$HOME_DIR/node_modules/.bin/code-server" --version | head -1
