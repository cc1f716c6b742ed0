package shell

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/dtlab/dt/topology"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// pingTries is how many echo requests an unanswered pair gets; the timeout is shared
// between them.
const pingTries = 2

func (s *Shell) cmdPingall(ctx context.Context, args []string) error {
	fs := flags("pingall")
	timeoutArg := fs.String("timeout", "1", "seconds to wait for each pair's reply")
	if _, err := parseFlags(fs, "pingall", args, 0, 0); err != nil {
		return err
	}
	timeout, err := parseSeconds(*timeoutArg)
	if err != nil || timeout <= 0 {
		return fmt.Errorf("pingall: --timeout %q: want a positive number of seconds", *timeoutArg)
	}
	m, err := PingMatrix(ctx, s.live, timeout)
	if err != nil {
		return fmt.Errorf("pingall: %w", err)
	}
	s.printf("*** Ping: testing reachability (ICMP echo, %s timeout)\n", timeout)
	s.printf("%s", m)
	return nil
}

// Matrix is who reached whom: Reached[src][dst].
type Matrix struct {
	Nodes   []string
	Reached map[string]map[string]bool
}

// Sent and Received count the pairs tried and those that answered.
func (m Matrix) Sent() int { return len(m.Nodes) * (len(m.Nodes) - 1) }

// Received counts the pairs that answered.
func (m Matrix) Received() int {
	n := 0
	for _, row := range m.Reached {
		for _, ok := range row {
			if ok {
				n++
			}
		}
	}
	return n
}

// String is Mininet's pingall table: one row per source, X for a pair without reply.
func (m Matrix) String() string {
	var b strings.Builder
	w := 0
	for _, n := range m.Nodes {
		w = max(w, len(n))
	}
	for _, src := range m.Nodes {
		fmt.Fprintf(&b, "%-*s ->", w, src)
		for _, dst := range m.Nodes {
			if dst == src {
				continue
			}
			cell := "X"
			if m.Reached[src][dst] {
				cell = dst
			}
			fmt.Fprintf(&b, " %-*s", w, cell)
		}
		b.WriteString("\n")
	}
	sent, got := m.Sent(), m.Received()
	pct := 0
	if sent > 0 {
		pct = (sent - got) * 100 / sent
	}
	fmt.Fprintf(&b, "*** Results: %d%% dropped (%d/%d received)\n", pct, got, sent)
	return b.String()
}

// PingMatrix sends an ICMP echo from every node's namespace to every other node and
// reports which pairs answered within timeout.
func PingMatrix(ctx context.Context, live *topology.Live, timeout time.Duration) (Matrix, error) {
	m := Matrix{Nodes: live.Spec.NodeNames(), Reached: map[string]map[string]bool{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, src := range live.Spec.Nodes {
		var dsts []topology.Node
		for _, d := range live.Spec.Nodes {
			if d.Name != src.Name {
				dsts = append(dsts, d)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := pingFrom(ctx, topology.NetnsName(live.State.RunID, src.Name), dsts, timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("from %s: %w", src.Name, err))
			}
			row := map[string]bool{}
			for _, d := range dsts {
				row[d.Name] = got[d.IP]
			}
			m.Reached[src.Name] = row
		}()
	}
	wg.Wait()
	return m, errors.Join(errs...)
}

// pingFrom sends echo requests from a raw ICMP socket opened in the namespace (the socket
// stays bound to it; no goroutine stays there) and returns the addresses that replied.
func pingFrom(ctx context.Context, netnsName string, dsts []topology.Node, timeout time.Duration) (map[string]bool, error) {
	var conn *icmp.PacketConn
	opened := make(chan error, 1)
	go func() {
		opened <- topology.InNetns(netnsName, func() error {
			var err error
			conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
			return err
		})
	}()
	if err := <-opened; err != nil {
		return nil, fmt.Errorf("open ICMP socket: %w", err)
	}
	defer conn.Close()
	id := rand.IntN(0xffff) + 1
	got := map[string]bool{}
	buf := make([]byte, 1500)
	for try := 0; try < pingTries && len(got) < len(dsts); try++ {
		for i, d := range dsts {
			if got[d.IP] {
				continue
			}
			msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: try<<8 | i, Data: []byte("dt pingall")}}
			b, err := msg.Marshal(nil)
			if err != nil {
				return got, err
			}
			if _, err := conn.WriteTo(b, &net.IPAddr{IP: net.ParseIP(d.IP)}); err != nil {
				// An unreachable destination is an answer, not an error of the probe.
				continue
			}
		}
		deadline := time.Now().Add(timeout / pingTries)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			return got, err
		}
		for len(got) < len(dsts) {
			if ctx.Err() != nil {
				return got, ctx.Err()
			}
			n, peer, err := conn.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return got, err
			}
			reply, err := icmp.ParseMessage(1, buf[:n]) // 1: ICMP for IPv4
			if err != nil || reply.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if echo, ok := reply.Body.(*icmp.Echo); ok && echo.ID == id {
				if a, ok := peer.(*net.IPAddr); ok {
					got[a.IP.String()] = true
				}
			}
		}
	}
	return got, nil
}
