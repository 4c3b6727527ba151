// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The bare AF_XDP baseline of the benchmarks: every frame of a queue goes
 * to the AF_XDP socket bound to that queue, with no parsing, no map but the
 * socket map, no counters. What the LNS's steering program costs on top of
 * AF_XDP itself is measured against this (lns-load's "bare" mode).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* One socket per receive queue, keyed by the queue's index. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} reflect_xsks SEC(".maps");

SEC("xdp")
int reflect_xdp(struct xdp_md *ctx)
{
	/* A queue without a socket keeps the stack's behaviour. */
	return bpf_redirect_map(&reflect_xsks, ctx->rx_queue_index, XDP_PASS);
}
