#!/bin/sh
# The CPU image's entry point: auth follows the keys, as in scripts/serve. Auth is switched off only for the built-in
# demo model with no key given (TTS_API_KEYS, TTS_API_KEYS_FILE or a key store) and TTS_AUTH_ENABLED unset; a key
# turns it on, and so does a real model (without keys it warns that every request gets 401).
set -eu
if [ -z "${TTS_AUTH_ENABLED:-}" ] && [ -z "${TTS_API_KEYS:-}${TTS_API_KEYS_FILE:-}" ] \
   && [ "${TTS_KEY_BACKEND:-static}" = "static" ] && [ "${TTS_MODEL_DIR:-}" = "${TTS_DEMO_DIR:-}" ]; then
  echo "[entrypoint] demo model, no API keys: auth OFF (publish on loopback only; -e TTS_API_KEYS=... turns it on)"
  export TTS_AUTH_ENABLED=false
fi
exec "$@"
