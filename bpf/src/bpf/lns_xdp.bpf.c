// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * LNS steering program, attached to the LAC-facing and the core-facing
 * interfaces. It decides, per frame, who handles it:
 *   - the AF_XDP fast path: L2TP data of forwarding sessions carrying IPv4 or
 *     IPv6, and core packets addressed to a subscriber;
 *   - the kernel stack (so the control plane's UDP socket): L2TP control,
 *     PPP control protocols, sessions still negotiating, everything else;
 *   - nobody: spoofed subscriber sources, unknown sessions, wrong peers.
 * Every decision increments one per-CPU counter named in lns_abi.h.
 *
 * The program never modifies a frame; it only prepends lns_xdp_meta to the
 * frames it redirects.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lns_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Force BTF for types that appear in no map definition, so userspace can
 * check its mirror of them against this object's BTF. */
const struct lns_xdp_meta *lns_btf_xdp_meta __attribute__((unused));
const enum lns_counter *lns_btf_counter __attribute__((unused));
const enum lns_session_state *lns_btf_session_state __attribute__((unused));
const enum lns_direction *lns_btf_direction __attribute__((unused));
const struct lns_session_stats *lns_btf_session_stats __attribute__((unused));
const enum lns_owner *lns_btf_owner __attribute__((unused));
const struct lns_long64 *lns_btf_long64 __attribute__((unused));
const struct lns_nh_query *lns_btf_nh_query __attribute__((unused));
const enum lns_nh_result *lns_btf_nh_result __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lns_config);
} lns_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LNS_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct lns_iface);
} lns_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, LNS_XSK_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} lns_xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct lns_session);
} lns_sessions SEC(".maps");

/* Sized by the loader (max_sessions / 64, rounded up). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS / 64);
	__type(key, __u32);
	__type(value, __u64);
} lns_fast_slots SEC(".maps");

/* Written and read by userspace only (see lns_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, __u32);
} lns_slot_marks SEC(".maps");

/* Sized by the loader (--pool-units / 64, rounded up). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lns_pool_bits SEC(".maps");

/* Written by userspace, read by the workers only (see lns_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} lns_pool_sessions SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, struct lns_session_key);
	__type(value, __u32);
} lns_session_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __be32);
	__type(value, __u32);
} lns_sub_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, struct lns_in6);
	__type(value, __u32);
} lns_sub_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __u64);
	__type(value, __u32);
} lns_sub_v6_64 SEC(".maps");

/* Written and read by userspace only (see lns_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __u64);
	__type(value, struct lns_long64);
} lns_sub_v6_long SEC(".maps");

/* Sized by the loader (2^(32 - lns_config.sub_flat_shift)). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct lns_flat_entry);
} lns_sub_v4_flat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2 * LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, struct lns_flat_entry);
} lns_sub_v6_flat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, LNS_MAX_PREFIXES);
	__type(key, struct lns_lpm_v4);
	__type(value, __u32);
} lns_sub_v4_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, LNS_MAX_PREFIXES);
	__type(key, struct lns_lpm_v6);
	__type(value, __u32);
} lns_sub_v6_lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LNS_NH_CACHE_SETS * LNS_NH_CACHE_WAYS);
	__type(key, __u32);
	__type(value, struct lns_nh);
} lns_nh_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LNS_NEIGH_MISS_ENTRIES);
	__type(key, struct lns_in6);
	__type(value, __u64);
} lns_neigh_miss SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS * LNS_DEFAULT_MAX_WORKERS);
	__type(key, __u32);
	__type(value, struct lns_session_stats);
} lns_session_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, LNS_DEFAULT_MAX_SESSIONS);
	__type(key, __u32);
	__type(value, __u64);
} lns_session_ns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LNS_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} lns_counters SEC(".maps");

/* L2TP header flag bits (RFC 2661 section 3.1) */
#define L2TP_T 0x8000
#define L2TP_L 0x4000
#define L2TP_S 0x0800
#define L2TP_O 0x0200
#define L2TP_VER_MASK 0x000f

#define PPP_IPV4 0x0021
#define PPP_IPV6 0x0057

#define VLAN_HLEN 4
#define IPV4_FRAG_MASK 0x3fff /* MF bit and fragment offset */

/* True when `p` lies past the logical end of the message or the frame. The
 * verifier only learns a packet pointer's range from a comparison with
 * data_end itself, so both are compared. */
#define beyond(p, end, data_end) ((void *)(p) > (void *)(end) || (void *)(p) > (data_end))

static __always_inline int count(__u32 reason, int action)
{
	__u64 *c;
	__u32 rx = LNS_CNT_RX;

	c = bpf_map_lookup_elem(&lns_counters, &rx);
	if (c)
		*c += 1;
	c = bpf_map_lookup_elem(&lns_counters, &reason);
	if (c)
		*c += 1;
	return action;
}

/* A parsed frame: offsets from the start of the frame, so they survive the
 * pointer reloads that bpf_xdp_adjust_meta forces. */
struct parsed {
	__u32 l3;        /* outer IP header */
	__u32 l4;        /* after the outer IP header */
	__u32 l3_end;    /* end of the outer IP packet (from its length field) */
	__u8 ip_version; /* 4 or 6 */
	__u8 proto;      /* IP protocol / IPv6 next header */
	__u8 fragment;   /* IPv4 MF or offset set, or IPv6 fragment header */
};

union flat_word {
	__u64 word;
	struct lns_flat_entry e;
};

static __always_inline int owns_64(const __u8 *prefix, __u8 len, __u32 w0, __u32 w1)
{
	const __u32 *p = (const __u32 *)prefix;

	return len == 64 && p[0] == w0 && p[1] == w1;
}

/* The probe run of one flat table for `tag`. For IPv4 the tag is the
 * address; for IPv6 it is the /64's halves (`w0`, `w1`) XORed, which
 * different /64s share now and then: either way the session named by an
 * entry has the last word. */
static __always_inline __u64 flat_probe(void *table, __u32 tag, __u32 shift, int v6, __u32 w0,
					__u32 w1)
{
	__u32 first, mask;

	if (shift == 0 || shift > 31)
		return 0;
	first = (tag * LNS_FLAT_HASH) >> shift;
	mask = 0xffffffffU >> shift;
	for (__u32 n = 0; n < LNS_FLAT_PROBES; n++) {
		__u32 k = (first + n) & mask, cand;
		struct lns_session *s;
		union flat_word u;
		__u64 *p;

		p = bpf_map_lookup_elem(table, &k);
		if (!p)
			return 0;
		/* One 8-byte load: the writers' compare-and-swap changes tag
		 * and session at once. */
		u.word = *(volatile __u64 *)p;
		if (u.e.session_plus1 == LNS_FLAT_EMPTY)
			return 0;
		if (u.e.session_plus1 == LNS_FLAT_TOMBSTONE || u.e.tag != tag)
			continue;
		cand = u.e.session_plus1 - 1;
		s = bpf_map_lookup_elem(&lns_sessions, &cand);
		if (!s || s->state == LNS_SESSION_FREE)
			continue;
		if (v6 ? owns_64(s->ipv6_prefix, s->ipv6_prefix_len, w0, w1) ||
			     owns_64(s->delegated_prefix, s->delegated_prefix_len, w0, w1)
		       : s->ipv4 == tag)
			return (__u64)cand + 1;
	}
	return 0;
}

/* The flat tables' lookups are global functions: the verifier checks each
 * once, on its own, instead of once per path that reaches a call (the probe
 * loop multiplied the program's paths past the verifier's limit). Scalars
 * in and out: session index + 1 of the owner of `addr`, 0 if the table has
 * none (then the hash maps are asked). */
__attribute__((noinline)) __u64 lns_flat_v4(__u32 addr, __u32 shift)
{
	return flat_probe(&lns_sub_v4_flat, addr, shift, 0, 0, 0);
}

/* `w0`, `w1`: the /64, as loaded from the packet. */
__attribute__((noinline)) __u64 lns_flat_v6(__u32 w0, __u32 w1, __u32 shift)
{
	return flat_probe(&lns_sub_v6_flat, w0 ^ w1, shift, 1, w0, w1);
}

/* Looks up a subscriber address: the flat table, then the exact and prefix
 * maps. The session's index goes to *index; 0 when nobody owns it. */
static __always_inline int lookup_v4(const struct lns_config *cfg, __be32 addr, __u32 *index)
{
	struct lns_lpm_v4 key = { .prefixlen = 32, .addr = addr };
	__u64 flat = lns_flat_v4((__u32)addr, cfg->sub_flat_shift);
	__u32 *idx;

	if (flat) {
		*index = (__u32)(flat - 1);
		return 1;
	}
	idx = bpf_map_lookup_elem(&lns_sub_v4, &addr);
	if (!idx)
		idx = bpf_map_lookup_elem(&lns_sub_v4_lpm, &key);
	if (!idx)
		return 0;
	*index = *idx;
	return 1;
}

static __always_inline int lookup_v6(const struct lns_config *cfg, const __u8 *addr, __u32 *index)
{
	struct lns_lpm_v6 key = { .prefixlen = 128 };
	struct lns_in6 exact;
	__u32 net[2], *idx;
	__u64 flat;

	/* Most subscribers hold a /64: the flat table, else one hash lookup.
	 * The writers keep longer entries out of other sessions' /64s, so
	 * this is the longest match when it hits. */
	__builtin_memcpy(net, addr, 8);
	flat = lns_flat_v6(net[0], net[1], cfg->sub_flat_shift);
	if (flat) {
		*index = (__u32)(flat - 1);
		return 1;
	}
	idx = bpf_map_lookup_elem(&lns_sub_v6_64, net);
	if (!idx) {
		__builtin_memcpy(exact.addr, addr, 16);
		idx = bpf_map_lookup_elem(&lns_sub_v6, &exact);
	}
	if (!idx) {
		__builtin_memcpy(key.addr, addr, 16);
		idx = bpf_map_lookup_elem(&lns_sub_v6_lpm, &key);
	}
	if (!idx)
		return 0;
	*index = *idx;
	return 1;
}

/* Does `addr` fall in `prefix`/`len`? Unrolled over the 16 bytes. */
static __always_inline int in_prefix(const __u8 *addr, const __u8 *prefix, __u8 len)
{
	if (len == 0 || len > 128)
		return 0;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		int bits = (int)len - 8 * i;
		__u8 mask;

		if (bits <= 0)
			break;
		mask = bits >= 8 ? 0xff : (__u8)(0xff << (8 - bits));
		if ((addr[i] ^ prefix[i]) & mask)
			return 0;
	}
	return 1;
}

static __always_inline int addr_is_mapped_v4(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* Where the result of the worker's work goes: the kernel's routing and
 * neighbour tables answer, for `dst` seen from `src` (IPv4-mapped for v4). */
struct nexthop {
	__u32 ifindex;
	__u8 smac[6];
	__u8 dmac[6];
};

/* The cache set of (ingress interface, destination): a multiplicative hash
 * of the folded address, computed inline. */
static __always_inline __u32 nh_set(__u32 ifindex, const __u32 *dst)
{
	__u32 h = dst[0] ^ dst[1] ^ dst[2] ^ dst[3] ^ ifindex;

	h *= 0x9e3779b1U;
	return (h >> 20) & (LNS_NH_CACHE_SETS - 1); /* 4096 sets: the top 12 bits */
}

static __always_inline int nh_matches(const struct lns_nh *e, __u32 ifindex, const __u32 *dst,
				      __u32 epoch)
{
	const __u32 *k = (const __u32 *)e->key_addr;

	return e->epoch == epoch && e->key_ifindex == ifindex && k[0] == dst[0] && k[1] == dst[1] &&
	       k[2] == dst[2] && k[3] == dst[3];
}

/* The kernel's routing and neighbour tables, asked for `dst` from `src`
 * (IPv4-mapped for v4) as if the lookup came in on `ifindex`: an enum
 * lns_nh_result, with *nh filled on LNS_NH_FORWARD. A missing neighbour
 * is recorded in lns_neigh_miss, for the data plane to resolve. */
static __always_inline int fib_query(struct xdp_md *ctx, __u32 ifindex, int v4, const __u32 *src,
				     const __u32 *dst, struct nexthop *nh)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	fib.ifindex = ifindex;
	if (v4) {
		fib.family = 2; /* AF_INET */
		fib.ipv4_src = src[3];
		fib.ipv4_dst = dst[3];
	} else {
		fib.family = 10; /* AF_INET6 */
		__builtin_memcpy(fib.ipv6_src, src, 16);
		__builtin_memcpy(fib.ipv6_dst, dst, 16);
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		nh->ifindex = fib.ifindex;
		__builtin_memcpy(nh->smac, fib.smac, 6);
		__builtin_memcpy(nh->dmac, fib.dmac, 6);
		return LNS_NH_FORWARD;
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		struct lns_in6 key;
		__u64 now = bpf_ktime_get_ns();

		__builtin_memcpy(key.addr, dst, 16);
		bpf_map_update_elem(&lns_neigh_miss, &key, &now, BPF_ANY);
		return LNS_NH_NO_NEIGHBOUR;
	}
	if (rc == BPF_FIB_LKUP_RET_BLACKHOLE || rc == BPF_FIB_LKUP_RET_UNREACHABLE ||
	    rc == BPF_FIB_LKUP_RET_PROHIBIT)
		return LNS_NH_NO_ROUTE;
	return LNS_NH_NOT_FORWARDED;
}

static __always_inline int fib_nexthop(struct xdp_md *ctx, const struct lns_config *cfg, int v4,
				       const __u32 *src, const __u32 *dst, struct nexthop *nh)
{
	struct lns_nh *way0 = NULL, *way1 = NULL, *hit = NULL;
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 epoch = cfg->nh_epoch;

	if (cfg->nh_cache_ms) {
		__u32 k0 = nh_set(ifindex, dst) * LNS_NH_CACHE_WAYS, k1 = k0 + 1;

		way0 = bpf_map_lookup_elem(&lns_nh_cache, &k0);
		way1 = bpf_map_lookup_elem(&lns_nh_cache, &k1);
		if (way0 && nh_matches(way0, ifindex, dst, epoch))
			hit = way0;
		else if (way1 && nh_matches(way1, ifindex, dst, epoch))
			hit = way1;
		if (hit) {
			nh->ifindex = hit->ifindex;
			__builtin_memcpy(nh->smac, hit->smac, 6);
			__builtin_memcpy(nh->dmac, hit->dmac, 6);
			return -1;
		}
	}

	switch (fib_query(ctx, ifindex, v4, src, dst, nh)) {
	case LNS_NH_FORWARD:
		if (way0 && way1) {
			/* A stale or empty way0 first, else way1: a destination
			 * that settled in way0 keeps it while newcomers take
			 * turns in way1. Per CPU: no other writer. */
			struct lns_nh *e = way0->epoch != epoch || way0->key_ifindex == 0 ? way0 : way1;

			e->key_ifindex = ifindex;
			e->epoch = epoch;
			__builtin_memcpy(e->key_addr, dst, 16);
			e->ifindex = nh->ifindex;
			__builtin_memcpy(e->smac, nh->smac, 6);
			__builtin_memcpy(e->dmac, nh->dmac, 6);
		}
		return -1;
	case LNS_NH_NO_NEIGHBOUR:
		return count(LNS_CNT_PASS_NO_NEIGHBOUR, XDP_PASS);
	case LNS_NH_NO_ROUTE:
		return count(LNS_CNT_DROP_NO_ROUTE, XDP_DROP);
	default:
		return count(LNS_CNT_PASS_NOT_FORWARDED, XDP_PASS);
	}
}

/* What the worker needs to check an upstream frame itself (LNS_META_CHECK). */
struct checks {
	__u16 outer_l3;
	__u16 outer_l4;
	__u16 l2tp_ids;
	__u8 flags;
	__u8 outer_ip_version;
};

/* Prepends the metadata and redirects to this rx queue's AF_XDP socket. */

static __always_inline int to_fast_path(struct xdp_md *ctx, const struct lns_iface *iface,
					__u32 session_index, __u32 inner_offset, __u8 direction,
					__u8 ip_version, const struct nexthop *nh,
					const struct checks *chk)
{
	struct lns_xdp_meta *meta;
	__u32 slot;
	long action;
	void *data, *data_end;

	if (ctx->rx_queue_index >= LNS_MAX_QUEUES)
		return count(LNS_CNT_DROP_NO_XSK, XDP_DROP);
	slot = iface->xsk_base + ctx->rx_queue_index;
	/* No socket on the queue (the data plane restarting, the program kept
	 * attached by its pinned link): the kernel takes the frame, L2TP to
	 * the control plane's socket and core packets into its TUN device by
	 * its routes, so the slow path carries it. The redirect is chosen
	 * before the metadata is prepended, which a passed frame must not
	 * carry; the flags' low bits are the action for an empty slot. */
	action = bpf_redirect_map(&lns_xsks, slot, XDP_PASS);
	if (action != XDP_REDIRECT)
		return count(LNS_CNT_PASS_NO_SOCKET, XDP_PASS);

	if (bpf_xdp_adjust_head(ctx, -LNS_XDP_META_ROOM))
		return count(LNS_CNT_DROP_NO_XSK, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	meta = data;
	if (data + LNS_XDP_META_ROOM > data_end)
		return count(LNS_CNT_DROP_NO_XSK, XDP_DROP);
	/* The room's rest held whatever the buffer held before: not for the
	 * socket's eyes. Same cache line as the metadata. */
	__builtin_memset(data + sizeof(*meta), 0, LNS_XDP_META_ROOM - sizeof(*meta));
	meta->session_index = session_index;
	meta->inner_offset = inner_offset;
	meta->direction = direction;
	meta->ip_version = ip_version;
	meta->egress_ifindex = nh->ifindex;
	__builtin_memcpy(meta->smac, nh->smac, 6);
	__builtin_memcpy(meta->dmac, nh->dmac, 6);
	meta->outer_l3 = chk->outer_l3;
	meta->outer_l4 = chk->outer_l4;
	meta->l2tp_ids = chk->l2tp_ids;
	meta->flags = chk->flags;
	meta->outer_ip_version = chk->outer_ip_version;
	if (direction == LNS_DIR_DOWNSTREAM)
		count((chk->flags & LNS_META_CHECK) ? LNS_CNT_REDIRECT_DOWNSTREAM_CHECK
						   : LNS_CNT_REDIRECT_DOWNSTREAM,
		      0);
	else
		count((chk->flags & LNS_META_CHECK) ? LNS_CNT_REDIRECT_UPSTREAM_CHECK
						   : LNS_CNT_REDIRECT_UPSTREAM,
		      0);
	return action;
}

/* The pool unit `num` falls in (an IPv4 address, or an IPv6 address's top
 * 64 bits, as a host-order number): the index of its bit, or -1. Pools are
 * aligned on their prefix, so the unsigned difference is below the pool's
 * size exactly when `num` lies inside it. */
static __always_inline long pool_unit(const struct lns_config *cfg, __u8 version, __u64 num)
{
	__u32 n = cfg->pool_count;

#pragma unroll
	for (int i = 0; i < LNS_MAX_POOLS; i++) {
		const struct lns_pool *pl = &cfg->pools[i];
		__u64 off;

		if (i >= n)
			break;
		if (pl->ip_version != version)
			continue;
		off = (num - pl->net) >> (pl->unit_shift & 63);
		if (off < pl->units)
			return (long)(pl->base + (__u32)off);
	}
	return -1;
}

/* Is pool unit `unit`'s bit set in lns_pool_bits? */
static __always_inline int pool_bit(long unit)
{
	__u32 word;
	__u64 *w;

	if (unit < 0)
		return 0;
	word = (__u32)unit / 64;
	w = bpf_map_lookup_elem(&lns_pool_bits, &word);
	return w && ((*(volatile __u64 *)w >> (unit % 64)) & 1);
}

/* Core -> subscriber: the destination decides. A frame for no subscriber is
 * passed and counted under `miss`. */
static __always_inline int steer_core(struct xdp_md *ctx, const struct lns_config *cfg,
				      const struct lns_iface *iface, const struct parsed *p, __u32 miss)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lns_session *s;
	__u32 idx, *w;
	long unit = -1;
	int found;

	if (!(cfg->flags & LNS_CFG_WORKER_CHECKS) || cfg->pool_count == 0)
		goto lookup;
	if (p->ip_version == 4) {
		struct iphdr *ip = data + p->l3;

		if ((void *)(ip + 1) > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		unit = pool_unit(cfg, 4, bpf_ntohl(ip->daddr));
	} else {
		struct ipv6hdr *ip6 = data + p->l3;

		if ((void *)(ip6 + 1) > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		w = ip6->daddr.in6_u.u6_addr32;
		unit = pool_unit(cfg, 6, ((__u64)bpf_ntohl(w[0]) << 32) | bpf_ntohl(w[1]));
	}
	if (pool_bit(unit)) {
		/* A forwarding session's own unit: the worker reads the
		 * session and finds the LAC's next hop (lns_pool_bits). */
		struct nexthop nh = {};
		struct checks chk = { .flags = LNS_META_CHECK };

		return to_fast_path(ctx, iface, (__u32)unit, p->l3, LNS_DIR_DOWNSTREAM, p->ip_version, &nh,
				    &chk);
	}
lookup:
	if (p->ip_version == 4) {
		struct iphdr *ip = data + p->l3;

		if ((void *)(ip + 1) > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		found = lookup_v4(cfg, ip->daddr, &idx);
	} else {
		struct ipv6hdr *ip6 = data + p->l3;

		if ((void *)(ip6 + 1) > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		found = lookup_v6(cfg, ip6->daddr.in6_u.u6_addr8, &idx);
	}
	if (!found)
		return count(miss, XDP_PASS);
	s = bpf_map_lookup_elem(&lns_sessions, &idx);
	if (!s || s->state != LNS_SESSION_FORWARDING)
		return count(LNS_CNT_PASS_SUBSCRIBER_NOT_FORWARDING, XDP_PASS);
	/* Kept off the fast path (an IPsec peer's, whose frames must leave
	 * through the kernel's IPsec): the kernel routes it into the slow
	 * path's TUN device. */
	if (s->flags & LNS_SESS_SLOW_PATH)
		return count(LNS_CNT_PASS_SLOW_PATH_SESSION, XDP_PASS);
	/* Larger than the session's MTU (the subscriber's MRU, no more than
	 * the access link carries once tunnelled): encapsulated it would not
	 * fit the link toward the LAC. The kernel routes it into the slow
	 * path's TUN device, where the control plane fragments it (IPv4
	 * without DF) or answers ICMP "too big", as a router does. */
	if (s->mtu && p->l3_end - p->l3 > s->mtu)
		return count(LNS_CNT_PASS_TOO_BIG, XDP_PASS);
	/* The encapsulated packet goes to the session's LAC. */
	{
		struct nexthop nh = {};
		struct checks chk = {};
		__u32 session_index = idx;
		int v4 = addr_is_mapped_v4((const __u32 *)s->peer_addr);
		int rc = fib_nexthop(ctx, cfg, v4, (const __u32 *)s->local_addr, (const __u32 *)s->peer_addr, &nh);

		if (rc >= 0)
			return rc;
		return to_fast_path(ctx, iface, session_index, p->l3, LNS_DIR_DOWNSTREAM, p->ip_version, &nh,
				    &chk);
	}
}

static __always_inline int addr_is_peer(const struct lns_session *s, const struct parsed *p,
					void *data, void *data_end)
{
	if (p->ip_version == 4) {
		struct iphdr *ip = data + p->l3;
		__u32 *pa = (__u32 *)s->peer_addr;

		if ((void *)(ip + 1) > data_end)
			return 0;
		if (!addr_is_mapped_v4(pa))
			return 0;
		return pa[3] == ip->saddr;
	} else {
		struct ipv6hdr *ip6 = data + p->l3;
		__u32 *pa = (__u32 *)s->peer_addr;
		__u32 *sa;

		if ((void *)(ip6 + 1) > data_end)
			return 0;
		sa = ip6->saddr.in6_u.u6_addr32;
		return pa[0] == sa[0] && pa[1] == sa[1] && pa[2] == sa[2] && pa[3] == sa[3];
	}
}

/* Is `slot`'s bit set in lns_fast_slots? One 8-byte read of a 16 KiB
 * bitmap (for 131,072 slots), which stays in the cache where the session
 * table does not. */
static __always_inline int fast_slot(__u32 slot)
{
	__u32 word = slot / 64;
	__u64 *w = bpf_map_lookup_elem(&lns_fast_slots, &word);

	return w && ((*(volatile __u64 *)w >> (slot % 64)) & 1);
}

/* One of the control plane's own ports of tunnels (lns_config). */
static __always_inline int tunnel_port(const struct lns_config *cfg, __be16 port)
{
	__u16 p = bpf_ntohs(port);

	return cfg->tunnel_port_last && p >= cfg->tunnel_port_first && p <= cfg->tunnel_port_last;
}

/* LAC -> LNS: an L2TP message. `p->l4` is the UDP header. */
static __always_inline int steer_l2tp(struct xdp_md *ctx, const struct lns_config *cfg,
				      const struct lns_iface *iface, const struct parsed *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct udphdr *udp = data + p->l4;
	struct lns_session_key key;
	struct lns_session *s = NULL;
	struct checks chk = {};
	__u8 *l2tp, *ppp, *end;
	__u16 flags, proto;
	__u32 *idx, owner, inner, udp_len, direct;

	if ((void *)(udp + 1) > data_end)
		return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
	udp_len = bpf_ntohs(udp->len);
	if (udp_len < sizeof(*udp))
		return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
	if (p->l4 + udp_len > p->l3_end)
		return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
	/* Ethernet may pad short frames: the UDP length says where L2TP ends. */
	end = data + p->l4 + udp_len;
	if ((void *)end > data_end)
		return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);

	l2tp = (__u8 *)(udp + 1);
	if (beyond(l2tp + 2, end, data_end))
		return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
	flags = ((__u16)l2tp[0] << 8) | l2tp[1];
	if ((flags & L2TP_VER_MASK) != 2)
		/* L2TPv3 over UDP and anything else: not ours to judge */
		return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
	if (flags & L2TP_T)
		return count(LNS_CNT_PASS_L2TP_CONTROL, XDP_PASS);

	/* Fixed order of the optional fields: Length, Tunnel, Session, Ns/Nr, Offset. */
	ppp = l2tp + 2;
	if (flags & L2TP_L) {
		__u16 len;

		if (beyond(ppp + 2, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		len = ((__u16)ppp[0] << 8) | ppp[1];
		if (l2tp + len > end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		if (len < 6)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		ppp += 2;
	}
	if (beyond(ppp + 4, end, data_end))
		return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
	key.tunnel_id = ((__u16)ppp[0] << 8) | ppp[1];
	key.session_id = ((__u16)ppp[2] << 8) | ppp[3];
	chk.l2tp_ids = (__u16)((void *)ppp - data);
	ppp += 4;
	if (flags & L2TP_S) {
		if (beyond(ppp + 4, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		ppp += 4;
	}
	if (flags & L2TP_O) {
		__u16 pad;

		if (beyond(ppp + 2, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		pad = ((__u16)ppp[0] << 8) | ppp[1];
		if (pad > LNS_MAX_L2TP_OFFSET)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		ppp += 2;
		ppp += pad;
		if (beyond(ppp, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
	}

	/* The direct slot first: the control plane puts its sessions there,
	 * and an array index costs no hash. When its bit in lns_fast_slots is
	 * set, nothing but the session there can own this key, and the worker
	 * checks that session: the program reads no session at all. Else a
	 * slot holding another key (an operator's session placed elsewhere)
	 * sends us to the hash. */
	direct = LNS_DIRECT_SLOT(key.tunnel_id, key.session_id, cfg->session_bank_mask);
	idx = &direct;
	if ((cfg->flags & LNS_CFG_WORKER_CHECKS) && fast_slot(direct)) {
		chk.flags = LNS_META_CHECK;
		chk.outer_l3 = (__u16)p->l3;
		chk.outer_l4 = (__u16)p->l4;
		chk.outer_ip_version = p->ip_version;
	} else {
		s = bpf_map_lookup_elem(&lns_sessions, &direct);
		if (!s || s->local_tunnel_id != key.tunnel_id || s->local_session_id != key.session_id ||
		    s->state == LNS_SESSION_FREE) {
			idx = bpf_map_lookup_elem(&lns_session_ids, &key);
			s = idx ? bpf_map_lookup_elem(&lns_sessions, idx) : NULL;
		}
		if (!s || s->state == LNS_SESSION_FREE) {
			if (cfg->flags & LNS_CFG_PASS_UNKNOWN_SESSION)
				return count(LNS_CNT_PASS_UNKNOWN_SESSION, XDP_PASS);
			return count(LNS_CNT_DROP_UNKNOWN_SESSION, XDP_DROP);
		}
		if (!addr_is_peer(s, p, data, data_end) || udp->source != s->peer_port)
			return count(LNS_CNT_DROP_PEER_MISMATCH, XDP_DROP);
	}

	/* PPP: Address/Control FF 03 unless compressed (ACFC), then a protocol
	 * field of 1 byte when its low bit is set (PFC, RFC 1661 section 6.5)
	 * or 2 bytes. */
	if (beyond(ppp + 1, end, data_end))
		return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
	if (ppp[0] == 0xff) {
		if (beyond(ppp + 2, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		if (ppp[1] != 0x03)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		ppp += 2;
		if (beyond(ppp + 1, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
	}
	if (ppp[0] & 1) {
		proto = ppp[0];
		ppp += 1;
	} else {
		if (beyond(ppp + 2, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		proto = ((__u16)ppp[0] << 8) | ppp[1];
		ppp += 2;
	}
	/* PPP control goes to the control plane, which checks the LAC's
	 * address itself (a fast slot's frames are not checked here). */
	if (proto != PPP_IPV4 && proto != PPP_IPV6)
		return count(LNS_CNT_PASS_PPP_CONTROL, XDP_PASS);
	if (s && s->state != LNS_SESSION_FORWARDING)
		return count(LNS_CNT_PASS_SESSION_NOT_FORWARDING, XDP_PASS);
	/* Kept off the fast path: the control plane's socket takes it. (Its
	 * slot's fast bit is never set, so the session was read.) */
	if (s && (s->flags & LNS_SESS_SLOW_PATH))
		return count(LNS_CNT_PASS_SLOW_PATH_SESSION, XDP_PASS);

	inner = (__u32)((void *)ppp - data);
	if (proto == PPP_IPV4) {
		struct iphdr *ip = (struct iphdr *)ppp;
		__u16 tot;

		if (beyond(ip + 1, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		if (ip->version != 4 || ip->ihl < 5)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		tot = bpf_ntohs(ip->tot_len);
		if (tot < ip->ihl * 4)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		if (ppp + tot > end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		/* The common case, the session's own address, needs no lookup;
		 * framed routes are found in the maps. */
		if (s && (s->ipv4 == 0 || ip->saddr != s->ipv4)) {
			if (!lookup_v4(cfg, ip->saddr, &owner) || owner != *idx)
				return count(LNS_CNT_DROP_SPOOFED, XDP_DROP);
		}
		{
			struct nexthop nh = {};
			__u32 session_index = *idx;
			__u32 src[4] = { 0, 0, bpf_htonl(0xffff), ip->saddr };
			__u32 dst[4] = { 0, 0, bpf_htonl(0xffff), ip->daddr };
			int rc = fib_nexthop(ctx, cfg, 1, src, dst, &nh);

			if (rc >= 0)
				return rc;
			return to_fast_path(ctx, iface, session_index, inner, LNS_DIR_UPSTREAM, 4, &nh, &chk);
		}
	} else {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)ppp;
		__u8 *src, *dst;

		if (beyond(ip6 + 1, end, data_end))
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		if (ip6->version != 6)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		if ((__u8 *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		src = ip6->saddr.in6_u.u6_addr8;
		dst = ip6->daddr.in6_u.u6_addr8;
		/* Router and neighbour discovery and DHCPv6 run from link-local
		 * addresses, to link-local addresses or to multicast: the control
		 * plane answers them (they never leave the PPP link, so the
		 * anti-spoofing check and the FIB have no say). */
		if ((src[0] == 0xfe && (src[1] & 0xc0) == 0x80) ||
		    (dst[0] == 0xfe && (dst[1] & 0xc0) == 0x80) || dst[0] == 0xff)
			return count(LNS_CNT_PASS_IPV6_LINK_LOCAL, XDP_PASS);
		/* The session's own prefixes first: with a /64 per subscriber the
		 * maps' longest-prefix match is the costliest lookup here. */
		if (s && !in_prefix(src, s->ipv6_prefix, s->ipv6_prefix_len) &&
		    !in_prefix(src, s->delegated_prefix, s->delegated_prefix_len)) {
			if (!lookup_v6(cfg, src, &owner) || owner != *idx)
				return count(LNS_CNT_DROP_SPOOFED, XDP_DROP);
		}
		{
			struct nexthop nh = {};
			__u32 session_index = *idx;
			__u32 s6[4], d6[4];
			int rc;

			__builtin_memcpy(s6, src, 16);
			__builtin_memcpy(d6, dst, 16);
			rc = fib_nexthop(ctx, cfg, 0, s6, d6, &nh);
			if (rc >= 0)
				return rc;
			return to_fast_path(ctx, iface, session_index, inner, LNS_DIR_UPSTREAM, 6, &nh, &chk);
		}
	}
}

SEC("xdp")
int lns_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	const struct lns_config *cfg;
	const struct lns_iface *iface;
	struct parsed p = {};
	__u32 zero = 0, ifindex = ctx->ingress_ifindex;
	__u16 proto;

	cfg = bpf_map_lookup_elem(&lns_config, &zero);
	if (!cfg)
		return count(LNS_CNT_PASS_NO_CONFIG, XDP_PASS);
	iface = bpf_map_lookup_elem(&lns_ifaces, &ifindex);
	if (!iface)
		return count(LNS_CNT_PASS_UNKNOWN_IFACE, XDP_PASS);

	if ((void *)(eth + 1) > data_end)
		return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
	proto = eth->h_proto;
	p.l3 = sizeof(*eth);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		__be16 *inner_proto = data + sizeof(*eth) + 2;

		if ((void *)(inner_proto + 1) > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		proto = *inner_proto;
		p.l3 += VLAN_HLEN;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + p.l3;
		__u32 ihl, tot;

		if ((void *)(ip + 1) > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		if (ip->version != 4 || ip->ihl < 5)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		ihl = ip->ihl * 4;
		tot = bpf_ntohs(ip->tot_len);
		if (tot < ihl)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		if (data + p.l3 + tot > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		p.ip_version = 4;
		p.proto = ip->protocol;
		p.fragment = (ip->frag_off & bpf_htons(IPV4_FRAG_MASK)) != 0;
		p.l4 = p.l3 + ihl;
		p.l3_end = p.l3 + tot;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + p.l3;
		__u32 plen;

		if ((void *)(ip6 + 1) > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		if (ip6->version != 6)
			return count(LNS_CNT_PASS_MALFORMED, XDP_PASS);
		plen = bpf_ntohs(ip6->payload_len);
		if (data + p.l3 + sizeof(*ip6) + plen > data_end)
			return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
		p.ip_version = 6;
		p.proto = ip6->nexthdr;
		/* Extension headers are not walked: an L2TP LAC does not send
		 * them, and a fragment header makes nexthdr 44, so fragments and
		 * exotic packets simply are not UDP here and go to the stack. */
		p.fragment = ip6->nexthdr == IPPROTO_FRAGMENT;
		p.l4 = p.l3 + sizeof(*ip6);
		p.l3_end = p.l4 + plen;
	} else {
		return count(LNS_CNT_PASS_NOT_IP, XDP_PASS);
	}

	if (iface->roles & LNS_IF_ACCESS) {
		if (p.proto == IPPROTO_UDP && !p.fragment) {
			struct udphdr *udp = data + p.l4;

			if ((void *)(udp + 1) > data_end)
				return count(LNS_CNT_PASS_TRUNCATED, XDP_PASS);
			if (udp->dest == cfg->l2tp_port || tunnel_port(cfg, udp->dest))
				return steer_l2tp(ctx, cfg, iface, &p);
		} else if (p.fragment) {
			/* Only the first fragment has a UDP header: unless it is
			 * for a subscriber, let the kernel reassemble it and hand
			 * any L2TP in it to the control plane. */
			if (iface->roles & LNS_IF_CORE)
				return steer_core(ctx, cfg, iface, &p, LNS_CNT_PASS_FRAGMENT);
			return count(LNS_CNT_PASS_FRAGMENT, XDP_PASS);
		}
	}
	if (iface->roles & LNS_IF_CORE)
		return steer_core(ctx, cfg, iface, &p, LNS_CNT_PASS_NOT_L2TP);
	return count(LNS_CNT_PASS_NOT_L2TP, XDP_PASS);
}

/* Never attached: the workers run it with BPF_PROG_TEST_RUN on a
 * lns_nh_query to learn the next hop toward a LAC (lns_abi.h). */
SEC("xdp")
int lns_nh_resolve(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct lns_nh_query *q = data;
	struct nexthop nh = {};
	__u32 src[4], dst[4];

	if ((void *)(q + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(src, q->src, 16);
	__builtin_memcpy(dst, q->dst, 16);
	q->result = fib_query(ctx, q->ifindex, q->ip_version == 4, src, dst, &nh);
	q->out_ifindex = nh.ifindex;
	__builtin_memcpy(q->smac, nh.smac, 6);
	__builtin_memcpy(q->dmac, nh.dmac, 6);
	return XDP_PASS;
}
