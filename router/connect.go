package router

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A direct flow's upstream is connected by shunt, but the application is
// the one waiting, and without shunt its own kernel would have given up on
// its schedule: SYN retransmissions starting at 1 s and doubling (Linux:
// net.ipv4.tcp_syn_retries, 6 by default, and since 6.5 first
// tcp_syn_linear_timeouts retries 1 s apart, 4 by default: 131 s). shunt
// connects with the same timeout, so a host that cannot be reached
// directly fails as it would have without shunt: the application's own
// connect times out (its timer started first, with its SYN).
const (
	// kernelInitialRTO and kernelMaxRTO are Linux's TCP_TIMEOUT_INIT and
	// TCP_RTO_MAX.
	kernelInitialRTO = time.Second
	kernelMaxRTO     = 120 * time.Second
	// defaultSynRetries is Linux's default net.ipv4.tcp_syn_retries.
	defaultSynRetries = 6
)

// synTimeout is how long the Linux kernel keeps a connect waiting: the
// initial SYN and retries retransmissions, the first linear of them 1 s
// apart, then with the timeout doubling up to 120 s, as tcp_write_timeout
// and tcp_retransmit_timer count them. (6, 0) is 127 s, (6, 4) 131 s.
func synTimeout(retries, linear int) time.Duration {
	retries = max(retries, 0)
	linear = max(linear, 0)
	var total time.Duration
	rto := kernelInitialRTO
	for i := 0; i <= retries+linear; i++ {
		total += rto
		if i >= linear {
			rto = min(2*rto, kernelMaxRTO)
		}
	}
	return total
}

// kernelConnectTimeout reads the SYN retry settings with read (a file
// under /proc/sys/net/ipv4) and returns the kernel's connect timeout and
// where it came from, for the log. A missing tcp_syn_linear_timeouts (a
// kernel before 6.5) counts as 0; an unreadable tcp_syn_retries as the
// default, 6.
func kernelConnectTimeout(read func(name string) ([]byte, error)) (time.Duration, string) {
	get := func(name string) (int, bool) {
		b, err := read(name)
		if err != nil {
			return 0, false
		}
		v, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return v, err == nil && v >= 0
	}
	retries, ok := get("tcp_syn_retries")
	why := fmt.Sprintf("net.ipv4.tcp_syn_retries %d", retries)
	if !ok {
		retries = defaultSynRetries
		why = fmt.Sprintf("net.ipv4.tcp_syn_retries unreadable, Linux's default %d", retries)
	}
	linear, ok := get("tcp_syn_linear_timeouts")
	if ok && linear > 0 {
		why += fmt.Sprintf(", tcp_syn_linear_timeouts %d", linear)
	} else {
		linear = 0
	}
	return synTimeout(retries, linear), why
}
