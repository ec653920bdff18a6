// BLAKE2s from Debian's libb2 (libb2-dev): libsodium has only BLAKE2b, and
// WireGuard's handshake hashes with BLAKE2s (Crypto/Blake2s.swift).
#include <blake2.h>
