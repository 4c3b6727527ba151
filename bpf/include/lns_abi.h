/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel ABI of the LNS: every structure that crosses the line between
 * the XDP program and userspace (data plane, control plane, lnsctl).
 *
 * This header is the one definition. The Rust mirror is bpf/src/abi.rs; its
 * sizes and field offsets are checked at compile time there, and checked
 * against the BTF that clang emits for this header by the crate's tests, so
 * the two cannot drift apart silently.
 *
 * Conventions:
 *  - L2TP tunnel and session ids are in host byte order (the program
 *    converts with bpf_ntohs), so userspace writes plain integers.
 *  - IP addresses and UDP ports are in network byte order, as on the wire,
 *    so the program compares them without conversion.
 *  - IPv4 addresses inside 16-byte address fields are IPv4-mapped IPv6
 *    addresses (::ffff:a.b.c.d, RFC 4291 section 2.5.5.2).
 *  - Every struct is naturally aligned with explicit padding: no implicit
 *    holes, so C and Rust agree byte for byte.
 */
#ifndef LNS_ABI_H
#define LNS_ABI_H

#include <linux/types.h>

/* Bumped on any incompatible change; stored in the config map so a process
 * can refuse maps pinned by a build with another layout. */
#define LNS_ABI_VERSION 11

/* Map sizes. The session table's size is set by the loader at load time;
 * this is the default. */
#define LNS_DEFAULT_MAX_SESSIONS 65536
#define LNS_MAX_IFACES 16
#define LNS_MAX_QUEUES 64
#define LNS_XSK_SLOTS (LNS_MAX_IFACES * LNS_MAX_QUEUES)
#define LNS_MAX_PREFIXES 65536 /* least size; the loader gives two per session when more */

/* Largest L2TP Offset Size accepted: nobody pads more than a frame holds,
 * and the bound lets the verifier prove the pointer arithmetic safe. */
#define LNS_MAX_L2TP_OFFSET 2048

/* ---- lns_config: ARRAY, 1 entry, key __u32 0 ------------------------- */

/* lns_config.flags */
#define LNS_CFG_PASS_UNKNOWN_SESSION (1U << 0) /* pass, not drop, data for unknown sessions */
/* (1U << 1) is free: it was the benchmarks' reflect mode, now a program of
 * its own (reflect.bpf.c). */
/* L2TP data whose session's bit is set in lns_fast_slots goes to the fast
 * path without the program reading the session: the worker, which reads it
 * anyway, checks the session's key, state, peer and the subscriber's source
 * (see lns_fast_slots). Off: the program checks every frame itself. */
#define LNS_CFG_WORKER_CHECKS (1U << 2)

/* A subscriber pool (lns_config.pools): a prefix the control plane hands
 * out addresses from, one unit each (an IPv4 /32, an IPv6 /64 or a
 * delegated length). The program tells subscriber traffic from the rest by
 * the pool's prefix alone; unit u of a pool is entry base + u of
 * lns_pool_bits and lns_pool_sessions. Written by the loader. */
#define LNS_MAX_POOLS 8
#define LNS_MAX_POOL_UNIT_BITS 24 /* a pool holds at most 2^24 units */
struct lns_pool {
	/* The pool's first address as a host-order number: IPv4 the address,
	 * IPv6 the prefix's top 64 bits. An address's unit is
	 * (number - net) >> unit_shift, in the pool when below `units`. */
	__u64 net;
	__u32 units;      /* 2^(unit_len - prefix_len) */
	__u32 base;       /* the pool's unit 0 in lns_pool_bits / lns_pool_sessions */
	__u8 ip_version;  /* 4 or 6 */
	__u8 prefix_len;
	__u8 unit_len;    /* IPv4: 32; IPv6: prefix_len..64 */
	__u8 unit_shift;  /* (32 for IPv4, 64 for IPv6) - unit_len */
	__u32 _pad;
};

struct lns_config {
	__u32 abi_version;  /* LNS_ABI_VERSION of the loader that wrote it */
	__u32 flags;        /* LNS_CFG_* */
	__be16 l2tp_port;   /* UDP port of L2TP at the LNS (1701), network order */
	__u16 _pad0;
	__u32 nh_cache_ms;  /* how often the data plane moves nh_epoch; 0: look up every frame */
	/* A session's slot in lns_sessions is found without a hash lookup when
	 * it sits at its direct slot ((local tunnel id & mask) << 16 | local
	 * session id): the control plane allocates session ids so that it
	 * does. Sessions elsewhere (an operator's static session whose slot
	 * was taken) are found through lns_session_ids. Set by the loader
	 * from the table's size (lns_session_bank_mask). */
	__u32 session_bank_mask;
	/* Next hops cached with another epoch are stale: the data plane bumps
	 * it every nh_cache_ms (so a route or neighbour change is seen within
	 * that time) and on a flush. */
	__u32 nh_epoch;
	/* The flat subscriber tables (lns_sub_v4_flat, lns_sub_v6_flat) hold
	 * 2^(32 - sub_flat_shift) entries; 0: no flat tables, hash maps only.
	 * Set by the loader. */
	__u32 sub_flat_shift;
	/* Subscriber pools, pools[0..pool_count]; see lns_pool_bits. */
	__u32 pool_count;
	struct lns_pool pools[LNS_MAX_POOLS];
	/* The control plane's own ports of tunnels (RFC 2661 section 8.1: it
	 * answers an SCCRQ from a port it picks, and the LAC sends the
	 * tunnel's data there): L2TP arrives on l2tp_port and on
	 * tunnel_port_first..=tunnel_port_last. Host order, unlike l2tp_port:
	 * a range is compared as numbers. last 0: no range. */
	__u16 tunnel_port_first;
	__u16 tunnel_port_last;
	__u32 _pad1;
};

/* Banks of 65,536 direct slots that cover `max_sessions` (a power of two),
 * minus one. */
#define LNS_DIRECT_SLOT(tunnel_id, session_id, mask) \
	((((__u32)(tunnel_id) & (mask)) << 16) | (__u32)(session_id))

/* ---- lns_nh_cache: PERCPU_ARRAY, key way index -> lns_nh ---------------
 * bpf_fib_lookup costs more than the rest of the program together (150 ns
 * for IPv4, 370 ns for IPv6 on the development machine); a destination's
 * next hop is reused until the data plane moves lns_config.nh_epoch, which
 * it does every nh_cache_ms and on a flush. A two-way set-associative cache
 * in a per-CPU array: the program hashes (ingress interface, destination)
 * to a set and compares both ways, with no helper call (the kernel inlines
 * per-CPU array lookups; expiry by epoch spares a clock read) and no cache
 * line shared between cores. The LRU hash it replaces cost a hash of a
 * 20-byte key and two helper calls per frame: 70 ns. */
#define LNS_NH_CACHE_SETS 4096
#define LNS_NH_CACHE_WAYS 2

struct lns_nh {
	__u32 key_ifindex;    /* ingress interface of the lookup; 0: empty */
	__u32 epoch;          /* lns_config.nh_epoch when filled */
	__u8 key_addr[16];    /* destination (v4-mapped for IPv4) */
	__u32 ifindex;        /* egress interface */
	__u8 smac[6];
	__u8 dmac[6];
};

/* ---- lns_ifaces: HASH, key __u32 ifindex -> struct lns_iface ---------- */

/* lns_iface.roles */
#define LNS_IF_ACCESS (1U << 0) /* LAC-facing: L2TP arrives here */
#define LNS_IF_CORE (1U << 1)   /* Internet-facing: traffic to subscribers arrives here */

struct lns_iface {
	__u32 roles;    /* LNS_IF_* ; both in one-arm mode */
	__u32 xsk_base; /* index into lns_xsks of this interface's rx queue 0 */
};

/* ---- lns_xsks: XSKMAP, key xsk_base + rx_queue_index -> AF_XDP socket - */

/* ---- lns_sessions: ARRAY (mmapable), key session index -> lns_session - */

enum lns_session_state {
	LNS_SESSION_FREE = 0,       /* slot unused */
	LNS_SESSION_CONTROL = 1,    /* exists, PPP negotiating: everything goes to the control plane */
	LNS_SESSION_FORWARDING = 2, /* IPCP/IPv6CP up: IP goes to the fast path */
};

/* lns_session.owner: a writer that restarts after a crash removes the
 * entries it left (their tunnels died with it), and only those. */
enum lns_owner {
	LNS_OWNER_STATIC = 0,        /* lnsctl static-session: an operator's, never reclaimed */
	LNS_OWNER_CONTROL_PLANE = 1, /* lns-controlplane of this instance */
};

/* lns_session.flags: how to build data messages toward the LAC */
#define LNS_SESS_SEQUENCING (1U << 0)     /* peer asked for Ns/Nr in data messages (S bit) */
#define LNS_SESS_LENGTH (1U << 1)         /* send the L bit and Length field */
#define LNS_SESS_UDP_CSUM_ZERO (1U << 2)  /* IPv4 only: leave the outer UDP checksum zero */
#define LNS_SESS_ACFC (1U << 3)           /* omit PPP address/control (FF 03) */
#define LNS_SESS_PFC (1U << 4)            /* send 1-byte PPP protocol fields */
/* Never on the fast path: the program passes the session's frames both ways
 * to the kernel (LNS_CNT_PASS_SLOW_PATH_SESSION) and the control plane's
 * slow path carries them. For peers whose L2TP must stay inside IPsec (the
 * kernel decrypts and encrypts it after and before XDP) and for sessions an
 * operator keeps off AF_XDP. The writers keep such a slot's fast bit and
 * its pool units clear, so no worker sees its frames either. */
#define LNS_SESS_SLOW_PATH (1U << 5)

struct lns_session {
	/* First cache line: what the program reads for every frame of the
	 * session (a slot is 128-byte aligned). */
	__u32 state;             /* enum lns_session_state */
	__u32 flags;             /* LNS_SESS_* */
	__u16 local_tunnel_id;   /* our tunnel id (host order) */
	__u16 local_session_id;  /* our session id (host order) */
	__u16 peer_tunnel_id;    /* the LAC's tunnel id, put in data messages we send */
	__u16 peer_session_id;   /* the LAC's session id */
	__u8 peer_addr[16];      /* LAC address of the tunnel (v4-mapped for IPv4) */
	__be16 peer_port;        /* LAC UDP port of the tunnel */
	__be16 local_port;       /* LNS UDP port of the tunnel */
	__u16 mtu;               /* PPP MTU toward the subscriber (negotiated MRU) */
	__u8 ipv6_prefix_len;
	__u8 delegated_prefix_len;
	__be32 ipv4;             /* subscriber IPv4 address, 0 if none */
	__u32 access_ifindex;    /* interface the LAC is reached through */
	__u8 ipv6_prefix[16];    /* subscriber IPv6 (SLAAC) prefix, zero if none */
	/* Second cache line. */
	__u8 delegated_prefix[16]; /* DHCPv6-PD delegated prefix, zero if none */
	__u8 local_addr[16];     /* LNS address of the tunnel (v4-mapped for IPv4) */
	__u32 owner;             /* enum lns_owner: who wrote the entry and must remove it */
	__u32 _pad0;
	__u64 generation;        /* bumped by the control plane on every reuse of the slot */
	/* Per-subscriber rate limits, enforced by the workers (never by the
	 * program): kbit/s (1000 bit/s), 0 for none. A frame over the limit is
	 * dropped (or, downstream with shaping on, delayed) and counted in
	 * lns_session_stats. The burst is the bucket's depth in bytes of
	 * subscriber IP packets, chosen by the writer (at least one MTU). */
	__u32 rate_down_kbps;    /* core -> subscriber */
	__u32 rate_up_kbps;      /* subscriber -> core */
	__u32 burst_down;        /* bytes */
	__u32 burst_up;          /* bytes */
};

/* ---- lns_fast_slots: ARRAY (mmapable), key word index -> __u64 ---------
 * One bit per session slot (bit i % 64 of word i / 64): set only while
 *   - slot i holds a forwarding session that sits at its direct slot, and
 *   - no other session has slot i as its direct slot (a session placed
 *     elsewhere because slot i was taken: LNS_MARK_DISPLACED), and
 *   - no address besides the session's own (its ipv4, SLAAC and delegated
 *     prefix) points at slot i (a framed route: LNS_MARK_EXTRA).
 * With LNS_CFG_WORKER_CHECKS, L2TP data whose direct slot's bit is set goes
 * to the fast path flagged LNS_META_CHECK, without the program reading the
 * session: no other session can own that key, so the worker's checks of
 * the one session in the slot (key, state, LAC address and port, the inner
 * source among the session's own addresses) are the program's checks.
 * Why: with 100,000 subscribers the session table is megabytes, and a read
 * of it misses the cache on nearly every frame (200 ns on the development
 * VM); the program runs once per frame and cannot hide that, while the
 * worker reads the session anyway. The bitmap is 16 KiB for 131,072 slots.
 * Writers (userspace, any process) change bits with atomic and/or on the
 * mmap'd array; a bit wrongly clear costs the program's own checks, never
 * a wrong answer. Sized by the loader: max_sessions / 64 words, rounded up. */

/* ---- lns_pool_bits: ARRAY (mmapable), key word index -> __u64 ----------
 * One bit per pool unit (bit u % 64 of word u / 64), set only while entry u
 * of lns_pool_sessions names a forwarding session one of whose own
 * addresses (its ipv4, SLAAC or delegated prefix) is exactly that unit.
 * With LNS_CFG_WORKER_CHECKS, a core packet whose destination falls in a
 * pool unit whose bit is set goes to the fast path flagged LNS_META_CHECK
 * with the unit in lns_xdp_meta.session_index, and the program reads
 * neither a subscriber table nor the session: the worker reads both (its
 * reads are prefetched across a batch, the program's are not) and finds
 * the next hop toward the session's LAC itself (lns_nh_resolve). Writers
 * keep longer entries out of another session's /64, so the unit's session
 * is the longest match. Every other destination (bit clear: no session,
 * not forwarding, a framed route, a delegated prefix of another length)
 * takes the program's lookups as before. Sized by the loader
 * (--pool-units / 64 words); writers change bits with atomic and/or and
 * look again after, as for lns_fast_slots. */

/* ---- lns_pool_sessions: ARRAY (mmapable), key pool unit -> __u32 --------
 * Session index + 1 of the session that owns the unit, 0 for none. Written
 * by userspace, read by the workers only (never by the program). */

/* ---- lns_slot_marks: ARRAY (mmapable), key session index -> __u32 -------
 * Why a slot's bit must stay clear, kept by the writers and read only by
 * userspace. Changed with atomic and/or. */
#define LNS_MARK_DISPLACED (1U << 0) /* a session whose direct slot this is lives in another slot */
#define LNS_MARK_EXTRA (1U << 1)     /* addresses other than the session's own point at this slot */

/* ---- lns_session_ids: HASH, key lns_session_key -> __u32 session index - */

struct lns_session_key {
	__u16 tunnel_id;  /* local (LNS-assigned) tunnel id, host order */
	__u16 session_id; /* local (LNS-assigned) session id, host order */
};

/* ---- subscriber address maps -> __u32 session index -------------------
 * lns_sub_v4:     HASH, key __be32 (exact /32)
 * lns_sub_v6:     HASH, key struct lns_in6 (exact /128)
 * lns_sub_v6_64:  HASH, key the first 8 bytes of a /64 (SLAAC prefixes: one
 *                 hash lookup instead of a walk down the LPM trie, 20 levels
 *                 deep with 100,000 subscribers)
 * lns_sub_v4_lpm: LPM_TRIE, key struct lns_lpm_v4 (framed routes)
 * lns_sub_v6_lpm: LPM_TRIE, key struct lns_lpm_v6 (SLAAC and delegated prefixes)
 * The same maps answer both questions: "which session owns this destination"
 * (core -> subscriber) and "may this session use this source" (anti-spoofing).
 * IPv6 is looked up /64 first, then /128, then the trie; the writers refuse
 * an entry longer than /64 inside another session's /64, so this order
 * gives the longest match. To see the other way round without walking the
 * maps, they count the longer entries inside each /64 in
 * lns_sub_v6_long: HASH, key the /64 (8 bytes) -> struct lns_long64, which
 * only userspace reads.
 */
struct lns_long64 {
	__u32 owner; /* session index of the entries, LNS_LONG64_MIXED if several */
	__u32 count; /* entries longer than /64 inside this /64 */
};
#define LNS_LONG64_MIXED 0xffffffffU
struct lns_in6 {
	__u8 addr[16];
};

struct lns_lpm_v4 {
	__u32 prefixlen;
	__be32 addr;
};

struct lns_lpm_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* ---- lns_sub_v4_flat, lns_sub_v6_flat: ARRAY (mmapable) of lns_flat_entry
 * Open-addressed copies of lns_sub_v4 and lns_sub_v6_64, looked up first:
 * one cache line per lookup where a hash map costs a jhash, a bucket and an
 * element (the downstream path with 100,000 subscribers went from 240 to
 * 440 ns per frame on those misses). An entry is (tag, session index + 1):
 * the tag is the IPv4 address itself (as read from the packet), or for a /64
 * the XOR of its two 32-bit halves; its first slot is
 * (tag * LNS_FLAT_HASH) >> lns_config.sub_flat_shift, and it lies within
 * LNS_FLAT_PROBES slots after (wrapping). A lookup stops at an empty entry.
 * Writers (userspace, any process) change an entry with one 8-byte
 * compare-and-swap on the mmap'd array; a removed entry becomes a tombstone
 * (or empty when the run after it is empty).
 * The program trusts an entry only when the session it names owns the
 * address (its ipv4, or its SLAAC or delegated prefix is that /64) and is
 * not free, else it goes on to the hash maps: a stale, torn or missing
 * entry costs a lookup, never a wrong answer. The hash maps stay the
 * authority. */
struct lns_flat_entry {
	__u32 tag;
	__u32 session_plus1; /* session index + 1; LNS_FLAT_EMPTY, LNS_FLAT_TOMBSTONE */
};
#define LNS_FLAT_PROBES 8
#define LNS_FLAT_EMPTY 0U
#define LNS_FLAT_TOMBSTONE 0xffffffffU
#define LNS_FLAT_HASH 0x9e3779b1U

/* ---- metadata the program puts in front of a redirected frame ---------- */

enum lns_direction {
	LNS_DIR_UPSTREAM = 1,   /* from the LAC: decapsulate */
	LNS_DIR_DOWNSTREAM = 2, /* from the core: encapsulate */
};

/* Prepended (bpf_xdp_adjust_head) to every frame redirected to an AF_XDP
 * socket: the socket receives this struct followed by the Ethernet frame.
 * It carries what the program already parsed and looked up, so the worker
 * neither parses nor looks up again, and never makes a syscall: the next
 * hop comes from bpf_fib_lookup (the kernel's routing and neighbour tables).
 * (The XDP metadata area would be the natural place, but the AF_XDP library
 * gives no access to the bytes before a received frame.) */
struct lns_xdp_meta {
	__u32 session_index;  /* index into lns_sessions */
	__u16 inner_offset;   /* offset of the subscriber's IP header from the Ethernet header */
	__u8 direction;       /* enum lns_direction */
	__u8 ip_version;      /* 4 or 6: the subscriber packet's version */
	__u32 egress_ifindex; /* interface the result must leave through */
	__u8 smac[6];         /* Ethernet source for the result */
	__u8 dmac[6];         /* Ethernet destination (next hop) for the result */
	/* For the worker's checks (LNS_META_CHECK): offsets from the Ethernet
	 * header of the outer IP header, the outer UDP header and the L2TP
	 * Tunnel ID (the Session ID follows it). Zero downstream. */
	__u16 outer_l3;
	__u16 outer_l4;
	__u16 l2tp_ids;
	__u8 flags;            /* LNS_META_* */
	__u8 outer_ip_version; /* 4 or 6; 0 downstream */
};
/* lns_xdp_meta.flags */
/* Not checked by the program: the worker checks. Upstream (lns_fast_slots)
 * session_index is the direct slot; downstream (lns_pool_bits) it is the
 * pool unit, and egress_ifindex, smac and dmac are zero (the worker finds
 * the LAC's next hop). */
#define LNS_META_CHECK (1U << 0)
/* The program moves the frame's start back by this much and puts the
 * metadata at the new start; the rest of the room is unused. A whole cache
 * line, so that the AF_XDP copy-mode memcpy into the UMEM has source and
 * destination equally aligned: 24 bytes made them differ by 40 mod 64, and
 * the copy of a 1,400-byte packet cost about 200 ns more on the receiving
 * core (perf: __pi_memcpy 12 % -> 18 %). */
#define LNS_XDP_META_ROOM 64

/* ---- lns_nh_resolve: the second program of the object ------------------
 * Run by the workers with BPF_PROG_TEST_RUN on a lns_nh_query, never
 * attached: bpf_fib_lookup from (ifindex, src) to dst, the answer written
 * back into the query. How a worker finds the next hop toward a LAC for
 * downstream frames the program did not look up (LNS_META_CHECK); once per
 * LAC per --nh-cache-ms, not per frame. A missing neighbour is recorded in
 * lns_neigh_miss as the main program does. */
enum lns_nh_result {
	LNS_NH_FORWARD = 0,       /* ifindex, smac, dmac are set */
	LNS_NH_NO_NEIGHBOUR = 1,  /* route found, neighbour not resolved yet */
	LNS_NH_NO_ROUTE = 2,      /* blackhole, unreachable or prohibit */
	LNS_NH_NOT_FORWARDED = 3, /* any other refusal of the FIB */
	LNS_NH_BAD_QUERY = 4,     /* the query was shorter than lns_nh_query */
};
struct lns_nh_query {
	__u32 ifindex;    /* in: the interface the lookup is made from */
	__u32 ip_version; /* in: 4 or 6 */
	__u8 src[16];     /* in: v4-mapped for IPv4 */
	__u8 dst[16];     /* in: v4-mapped for IPv4 */
	__u32 result;     /* out: enum lns_nh_result */
	__u32 out_ifindex;/* out */
	__u8 smac[6];     /* out */
	__u8 dmac[6];     /* out */
};

/* ---- lns_neigh_miss: LRU_HASH, key struct lns_in6 (v4-mapped) -> __u64 ----
 * Destinations whose next hop had no neighbour entry (value: bpf_ktime_get_ns
 * of the last miss). The data plane asks the kernel to resolve them, since
 * the program cannot. */
#define LNS_NEIGH_MISS_ENTRIES 1024

/* ---- lns_session_stats: ARRAY (mmapable), key worker * max_sessions + index
 * Per-session traffic counters kept by the workers, one row per worker so
 * that each slot has a single writer and needs no lock or atomic
 * read-modify-write. Readers sum the rows. Counters are never reset: a
 * reader records them when a session starts in a slot and subtracts. */
struct lns_session_stats {
	__u64 up_packets;   /* decapsulated, LAC -> core */
	__u64 up_bytes;     /* subscriber IP bytes */
	__u64 down_packets; /* encapsulated, core -> LAC */
	__u64 down_bytes;   /* subscriber IP bytes */
	/* Over the session's rate limit (lns_session.rate_*): dropped. A
	 * whole cache line per slot with the above. */
	__u64 up_policed_packets;
	__u64 up_policed_bytes;
	__u64 down_policed_packets;
	__u64 down_policed_bytes;
};

#define LNS_DEFAULT_MAX_WORKERS 4

/* ---- lns_session_ns: ARRAY (mmapable), key session index -> __u64 ------
 * The next Ns of the session's data messages toward the LAC when it asked
 * for sequencing (RFC 2661 §5.4). The control plane (PPP frames) and every
 * worker (IP) take numbers from the same counter with an atomic add on the
 * shared mapping, so the LAC sees one sequence; the low 16 bits are Ns. The
 * control plane sets it to 0 when it installs a session. */

/* ---- lns_counters: PERCPU_ARRAY, key enum lns_counter -> __u64 ---------
 * One counter per verdict reason; every frame the program sees increments
 * LNS_CNT_RX and exactly one other counter. Names for userspace are the
 * enumerator names without the LNS_CNT_ prefix, in lower case. */
enum lns_counter {
	LNS_CNT_RX = 0,                     /* every frame seen */
	LNS_CNT_REDIRECT_UPSTREAM,          /* L2TP data of a forwarding session -> AF_XDP */
	LNS_CNT_REDIRECT_DOWNSTREAM,        /* core packet to a subscriber -> AF_XDP */
	LNS_CNT_DROP_SPOOFED,               /* inner source not owned by the session */
	LNS_CNT_DROP_UNKNOWN_SESSION,       /* L2TP data for an unknown (tunnel, session) */
	LNS_CNT_DROP_PEER_MISMATCH,         /* known session, outer source not its LAC */
	LNS_CNT_DROP_NO_XSK,                /* rx queue past LNS_MAX_QUEUES, or no room for the metadata */
	LNS_CNT_PASS_L2TP_CONTROL,          /* T bit set: control connection */
	LNS_CNT_PASS_PPP_CONTROL,           /* PPP protocol other than IPv4/IPv6 (LCP, auth, NCPs, ...) */
	LNS_CNT_PASS_SESSION_NOT_FORWARDING,/* session exists, PPP not yet up */
	LNS_CNT_PASS_UNKNOWN_SESSION,       /* unknown session, LNS_CFG_PASS_UNKNOWN_SESSION set */
	LNS_CNT_PASS_IPV6_LINK_LOCAL,       /* subscriber IPv6 from or to link-local, or to multicast (ND, DHCPv6) */
	LNS_CNT_PASS_SUBSCRIBER_NOT_FORWARDING, /* core packet to a subscriber whose session is not forwarding */
	LNS_CNT_PASS_NOT_IP,                /* ARP and other ethertypes */
	LNS_CNT_PASS_NOT_L2TP,              /* IP that is neither L2TP to us nor to a subscriber */
	LNS_CNT_PASS_FRAGMENT,              /* outer IP fragment carrying L2TP port traffic */
	LNS_CNT_PASS_MALFORMED,             /* header fields that make no sense (versions, lengths) */
	LNS_CNT_PASS_TRUNCATED,             /* the frame ends before its headers or its stated length */
	LNS_CNT_PASS_UNKNOWN_IFACE,         /* arrived on an interface not in lns_ifaces */
	LNS_CNT_PASS_NO_CONFIG,             /* lns_config unreadable (cannot happen once loaded) */
	LNS_CNT_DROP_NO_ROUTE,              /* the kernel's FIB says blackhole, unreachable or prohibit */
	LNS_CNT_PASS_NO_NEIGHBOUR,          /* next hop not yet resolved: the stack resolves it */
	LNS_CNT_PASS_NOT_FORWARDED,         /* FIB lookup declined (local, no route, forwarding off) */
	LNS_CNT_REDIRECT_UPSTREAM_CHECK,    /* L2TP data of a fast slot -> AF_XDP, the worker checks (LNS_META_CHECK) */
	LNS_CNT_REDIRECT_DOWNSTREAM_CHECK,  /* core packet to a pool unit whose bit is set -> AF_XDP, the worker checks */
	LNS_CNT_PASS_NO_SOCKET,             /* would go to AF_XDP, but no socket is bound on the queue (a data plane restarting): the kernel, so the control plane's slow path */
	LNS_CNT_PASS_SLOW_PATH_SESSION,     /* a session flagged LNS_SESS_SLOW_PATH, either way: the kernel and the slow path carry it */
	LNS_CNT_PASS_TOO_BIG,               /* core packet larger than its session's mtu: the kernel and the slow path fragment it or answer ICMP (with LNS_META_CHECK the worker does) */
	LNS_CNT_MAX,
};

#endif /* LNS_ABI_H */
