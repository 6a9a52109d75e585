/* bench/netns: random packet loss for a tc cls_bpf filter in direct-action
 * mode, on kernels without netem and without the gact action (this one):
 * drops one packet in LOSS_PER_MILLION per million, keeps the rest.
 * Built with `clang -O2 -target bpf -DLOSS_PER_MILLION=N -c`; loaded with
 * `tc filter add dev IF ingress bpf da obj FILE sec classifier`.
 * No headers: the one helper is called by its number (BPF_FUNC_get_prandom_u32). */
#ifndef LOSS_PER_MILLION
#define LOSS_PER_MILLION 1000
#endif
#define SEC(n) __attribute__((section(n), used))
#define TC_ACT_OK   0
#define TC_ACT_SHOT 2

struct __sk_buff;
static unsigned int (*bpf_get_prandom_u32)(void) = (void *)7;

SEC("classifier") int drop(struct __sk_buff *skb)
{
    (void)skb;
    return bpf_get_prandom_u32() % 1000000u < LOSS_PER_MILLION ? TC_ACT_SHOT : TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
