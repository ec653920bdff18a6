// CReactor: SO_REUSEPORT steering by a classic BPF program. See include/CReactor.h.
//
// The engine runs one reactor per core, each with its own UDP socket in one
// SO_REUSEPORT group on the same port. Without a program the kernel picks the
// socket by a hash of the 4-tuple, so a session's DATA lands on whichever core
// its peer's address hashes to. This program sends DATA (and relayed DATA) to
// the reactor that owns the receiver index instead: the engine hands out
// receiver indices whose low byte % groups names the owning reactor.
//
// The program sees the UDP payload at offset 0 (the kernel pulls the UDP
// header before running it):
//
//   DATA                                 RELAY carrying DATA
//   0      1        4       8            0      1       8            16     17       20      24
//  +------+--------+-------+---         +------+-------+------------+------+--------+-------+---
//  |  4   | 0 0 0  | index | ...        |  7   |  tag  | member id  |  4   | 0 0 0  | index | ...
//  +------+--------+-------+---         +------+-------+------------+------+--------+-------+---
//                   ^ byte 4: low byte (u32 LE)                                       ^ byte 20
//
//   socket = byte[4] % groups     DATA
//          = byte[20] % groups    RELAY whose inner datagram is DATA (relay_inner 1: a member,
//                                 the inner index's low byte names the owner)
//          = byte[21] % groups    the same with relay_inner 2: an anchor, by the inner index's
//                                 second byte (its low bit differs between the two directions
//                                 of a pair: Protocol/SessionShard.swift, SessionOwnership.pairBit)
//          = 0                    anything else: handshakes, probes, short datagrams
//
// A load past the end of the datagram aborts a classic BPF program with return
// value 0, so every short datagram goes to socket 0, as the Swift mirror
// (Sources/Reactor/Steering.swift, Steering.group) says. The value is the
// index in the group's socket array: the order sockets were bound (closing one
// moves the last socket into its slot). A value >= the group's size makes the
// kernel fall back to its hash.
#include "internal.h"

#include <errno.h>
#include <linux/filter.h>
#include <sys/socket.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

int CReactor_attach_steering(int fd, unsigned groups, int relay_inner) {
    // The classic verifier refuses a modulo by the constant 0 (EINVAL) anyway; say so here.
    if (groups == 0) return -EINVAL;
    // Jump offsets count from the next instruction. Without relay_inner, RELAY takes the default.
    enum { RELAY = 6, DEFAULT = 11 };
    struct sock_filter code[] = {
        /*  0 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 0),                         // A = type
        /*  1 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 4, 3 - 2, 0),              // DATA -> 3
        /*  2 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 7, (relay_inner ? RELAY : DEFAULT) - 3, DEFAULT - 3),
        /*  3 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 4),                         // A = receiver_index & 0xff
        /*  4 */ BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, groups),
        /*  5 */ BPF_STMT(BPF_RET | BPF_A, 0),
        /*  6 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 16),                        // A = inner type
        /*  7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 4, 0, DEFAULT - 8),        // inner DATA -> 8
        /*  8 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, relay_inner == 2 ? 21 : 20), // A = an inner receiver_index byte
        /*  9 */ BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, groups),
        /* 10 */ BPF_STMT(BPF_RET | BPF_A, 0),
        /* 11 */ BPF_STMT(BPF_RET | BPF_K, 0),
    };
    _Static_assert(sizeof(code) / sizeof(code[0]) == DEFAULT + 1, "jump targets match the program");
    struct sock_fprog prog = {.len = (unsigned short)(sizeof(code) / sizeof(code[0])), .filter = code};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) < 0) return -errno;
    return 0;
}
