package shaping

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// fakeWire records when each packet is sent on.
type fakeWire struct {
	mu   sync.Mutex
	at   map[uint32]time.Time // packet number -> sent
	sent []uint32
}

func (f *fakeWire) send(pkt []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := binary.BigEndian.Uint32(pkt[28:])
	f.at[n] = time.Now()
	f.sent = append(f.sent, n)
	return nil
}

// udpPacket is an IPv4/UDP packet of flow (10.0.0.1:sport -> 10.0.0.2:80) carrying n.
func udpPacket(sport uint16, n uint32) []byte {
	p := make([]byte, 32)
	p[0], p[9] = 0x45, 17
	copy(p[12:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	binary.BigEndian.PutUint16(p[20:], sport)
	binary.BigEndian.PutUint16(p[22:], 80)
	binary.BigEndian.PutUint32(p[28:], n)
	return p
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newTestDelayer(t *testing.T, p delayParams) (*delayer, *fakeWire) {
	t.Helper()
	w := &fakeWire{at: map[uint32]time.Time{}}
	d, err := newDelayer(1, w, p, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return d, w
}

func TestDelayerDueKeepsFlowOrder(t *testing.T) {
	d, _ := newTestDelayer(t, delayParams{delay: 10 * time.Millisecond})
	t0 := time.Now()
	d.enqueue(udpPacket(1, 1), t0)
	d.setParams(delayParams{delay: 2 * time.Millisecond})
	d.enqueue(udpPacket(2, 2), t0)
	d.enqueue(udpPacket(1, 3), t0) // due at 2 ms, but held behind packet 1 of its flow

	ready, next, empty := d.due(t0.Add(3*time.Millisecond), false)
	if len(ready) != 1 || binary.BigEndian.Uint32(ready[0].pkt[28:]) != 2 {
		t.Fatalf("at 3 ms: %d ready; want only packet 2 (other flow)", len(ready))
	}
	if !next.Equal(t0.Add(10*time.Millisecond)) || empty {
		t.Fatalf("next %v empty %v", next.Sub(t0), empty)
	}
	ready, _, empty = d.due(t0.Add(10*time.Millisecond), false)
	if len(ready) != 2 || binary.BigEndian.Uint32(ready[0].pkt[28:]) != 1 || binary.BigEndian.Uint32(ready[1].pkt[28:]) != 3 || !empty {
		t.Fatalf("at 10 ms: %d ready, empty %v; want packets 1 then 3", len(ready), empty)
	}
}

func TestDelayerSendsOnTimeInFlowOrder(t *testing.T) {
	const delay, jitter = 20 * time.Millisecond, 10 * time.Millisecond
	d, w := newTestDelayer(t, delayParams{delay: delay, jitter: jitter})
	go d.schedule()

	queued := map[uint32]time.Time{}
	for n := uint32(1); n <= 400; n++ {
		now := time.Now()
		queued[n] = now
		d.enqueue(udpPacket(uint16(n%3), n), now)
		time.Sleep(200 * time.Microsecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.stop(ctx); err != nil {
		t.Fatal(err)
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.sent) != 400 {
		t.Fatalf("sent %d of 400", len(w.sent))
	}
	last := map[uint32]uint32{}
	var late, early int
	for _, n := range w.sent {
		f := n % 3
		if n < last[f] {
			t.Fatalf("flow %d: packet %d sent after %d", f, n, last[f])
		}
		last[f] = n
		got := w.at[n].Sub(queued[n])
		if got < delay-jitter {
			early++
		}
		// Order can hold a packet past its own draw, but never past the latest draw of an
		// earlier packet of its flow: delay+jitter from its own arrival at most.
		if got > delay+jitter+5*time.Millisecond {
			late++
		}
	}
	// Early is a bug; late happens when the machine is busy, so only a share is checked.
	if early > 0 || late > 20 {
		t.Errorf("%d packets early, %d of 400 more than 5 ms late", early, late)
	}
	if st := d.stats(); st.Sent != 400 || st.Held != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestDelayerFlushOnCancel(t *testing.T) {
	d, w := newTestDelayer(t, delayParams{delay: time.Hour})
	go d.schedule()
	for n := uint32(1); n <= 10; n++ {
		d.enqueue(udpPacket(1, n), time.Now())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := d.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("stop took %v despite the context", took)
	}
	if len(w.sent) != 10 {
		t.Errorf("sent %d of 10 on flush", len(w.sent))
	}
}

func TestDelayerHoldLimit(t *testing.T) {
	d, _ := newTestDelayer(t, delayParams{delay: time.Hour})
	big := make([]byte, 60000)
	big[0] = 0x45
	for range maxHeldBytes/len(big) + 10 {
		d.enqueue(big, time.Now())
	}
	if st := d.stats(); st.Overflows != 10 || st.Held != maxHeldBytes/len(big) {
		t.Errorf("stats %+v; want 10 overflows", st)
	}
}

// TestDelayerWaitsOutsideSyscalls: a scheduler waiting for its next packet must be parked,
// not in a system call. A goroutine in a system call keeps its P until sysmon takes it
// back, which can take 20 ms; when the delayer's schedulers slept in ppoll, two of them
// (a router's two interfaces) held both Ps of a 2-core VM, nothing else in the process
// ran in the meantime, and TestUserspaceForwarded measured 3.5-5 ms more RTT.
func TestDelayerWaitsOutsideSyscalls(t *testing.T) {
	s := []metrics.Sample{{Name: "/sched/goroutines/not-in-go:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Skipf("runtime has no %s", s[0].Name)
	}
	inSyscalls := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	before := inSyscalls()
	const n = 4
	for i := range n {
		d, _ := newTestDelayer(t, delayParams{delay: time.Hour})
		go d.schedule()
		if i%2 == 0 { // half wait for a packet's time, half for a packet
			d.enqueue(udpPacket(1, uint32(i)), time.Now())
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // flush
			_ = d.stop(ctx)
		})
	}
	time.Sleep(20 * time.Millisecond)
	if got := inSyscalls(); got >= before+n {
		t.Errorf("%d goroutines in system calls with %d delayers waiting, %d before", got, n, before)
	}
}
