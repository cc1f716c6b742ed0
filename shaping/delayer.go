package shaping

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	mdnetlink "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Reader settings. Only the first copyRange bytes of a packet are copied to us: enough
// for the IPv6 header and the ports; the payload never leaves the kernel.
const (
	copyRange   = 128
	maxQueueLen = 32768   // packets the kernel holds for us; beyond it, it drops
	readBuffer  = 8 << 20 // socket buffer for packet messages, so bursts do not overrun it
)

// QueueStats counts what one interface's delay reader has done.
type QueueStats struct {
	Queue    uint16 // NFQUEUE queue number
	Received uint64 // packets handed to the reader
	Released uint64 // packets accepted after their delay
	Held     int    // packets waiting now
	Overruns uint64 // times the socket buffer overflowed (messages, hence packets, lost to us)
}

// verdicter is the kernel side of a queue: single and cumulative accepts.
type verdicter interface {
	accept(id uint32) error
	acceptUpTo(id uint32) error // every queued packet with an id up to id
}

type nfVerdicter struct{ nf *nfqueue.Nfqueue }

func (v nfVerdicter) accept(id uint32) error     { return v.nf.SetVerdict(id, nfqueue.NfAccept) }
func (v nfVerdicter) acceptUpTo(id uint32) error { return v.nf.SetVerdictBatch(id, nfqueue.NfAccept) }

// delayParams are swapped atomically when an impairment changes while packets flow.
type delayParams struct {
	delay, jitter time.Duration
}

// held is one packet waiting for its release time.
type held struct {
	id       uint32
	seq      uint64 // arrival order, which is also the kernel's id order
	release  time.Time
	released bool
	index    int // in the time heap
}

// delayer holds packets of one queue and releases each at arrival + delay ± jitter,
// never before the previous packet of its flow.
type delayer struct {
	queue uint16
	v     verdicter
	log   *slog.Logger

	params atomic.Pointer[delayParams]

	mu       sync.Mutex
	byTime   timeHeap
	arrivals []*held // in arrival order; released ones are trimmed from the front
	lastFlow map[uint64]time.Time
	seq      uint64
	rng      *rand.Rand
	pruned   time.Time
	draining bool
	last     uint32 // newest packet id seen
	flush    atomic.Bool

	wake chan struct{}
	done chan struct{}

	received, released, overruns atomic.Uint64

	nf     *nfqueue.Nfqueue // nil in unit tests
	cancel context.CancelFunc
	errMu  sync.Mutex
	err    error // why the reader stopped, if it did on its own
}

func newDelayer(queue uint16, v verdicter, p delayParams, log *slog.Logger) *delayer {
	d := &delayer{
		queue:    queue,
		v:        v,
		log:      log,
		lastFlow: make(map[uint64]time.Time),
		rng:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(queue))),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	d.params.Store(&p)
	return d
}

// startDelayer binds queue in the namespace nsFD (0 = current) and starts the reader and
// the scheduler. A queue bound by someone else fails with an error wrapping unix.EBUSY.
func startDelayer(queue uint16, nsFD int, p delayParams, log *slog.Logger) (*delayer, error) {
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        nsFD,
		NfQueue:      queue,
		MaxPacketLen: copyRange,
		MaxQueueLen:  maxQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		// GSO: take TSO/GSO super-packets whole instead of having the kernel segment them
		// first; we never modify packets, so checksums stay the kernel's business.
		Flags:        nfqueue.NfQaCfgFlagGSO,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("shaping: open nfqueue %d: %w", queue, err)
	}
	setReadBuffer(nf.Con, readBuffer)
	d := newDelayer(queue, nfVerdicter{nf}, p, log)
	d.nf = nf
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if err := nf.RegisterWithErrorFunc(ctx, d.onPacket, d.onError(ctx)); err != nil {
		cancel()
		_ = nf.Close()
		return nil, fmt.Errorf("shaping: bind nfqueue %d: %w", queue, err)
	}
	go d.schedule()
	return d, nil
}

// setReadBuffer forces a large receive buffer (SO_RCVBUFFORCE ignores rmem_max; we are
// root), falling back to what SO_RCVBUF allows.
func setReadBuffer(c *mdnetlink.Conn, n int) {
	if rc, err := c.SyscallConn(); err == nil {
		var serr error
		_ = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
		})
		if serr == nil {
			return
		}
	}
	_ = c.SetReadBuffer(n)
}

func (d *delayer) setParams(p delayParams) { d.params.Store(&p) }

// onPacket runs on the library's receive goroutine; it only records the packet.
func (d *delayer) onPacket(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	var key uint64
	if a.Payload != nil {
		key = flowKey(*a.Payload)
	}
	d.enqueue(*a.PacketID, key, time.Now())
	return 0
}

func (d *delayer) onError(ctx context.Context) nfqueue.ErrorFunc {
	return func(err error) int {
		switch {
		case ctx.Err() != nil:
			return 1
		case errors.Is(err, unix.ENOBUFS):
			// Messages were lost, but their packets stay queued in the kernel; the next
			// cumulative verdict releases them (see release).
			d.overruns.Add(1)
			d.log.Warn("nfqueue socket overrun", "queue", d.queue)
			return 0
		case errors.Is(err, net.ErrClosed):
			return 1
		}
		var oe *mdnetlink.OpError
		if errors.As(err, &oe) && (oe.Timeout() || oe.Temporary()) {
			return 0
		}
		// Stopping unbinds the queue: packets are then dropped (no bypass), never sent
		// undelayed.
		d.errMu.Lock()
		d.err = err
		d.errMu.Unlock()
		d.log.Warn("nfqueue reader stopped", "queue", d.queue, "err", err)
		return 1
	}
}

// enqueue schedules packet id of flow key, seen at now.
func (d *delayer) enqueue(id uint32, key uint64, now time.Time) {
	p := d.params.Load()
	d.received.Add(1)

	d.mu.Lock()
	delay := p.delay
	if p.jitter > 0 {
		// Uniform over [delay-jitter, delay+jitter], as netem without a distribution table.
		delay += time.Duration(d.rng.Int64N(int64(2*p.jitter)+1)) - p.jitter
	}
	release := now.Add(max(delay, 0))
	if last, ok := d.lastFlow[key]; ok && release.Before(last) {
		release = last // keep the flow in order
	}
	d.lastFlow[key] = release
	e := &held{id: id, seq: d.seq, release: release}
	d.seq++
	d.last = id
	heap.Push(&d.byTime, e)
	d.arrivals = append(d.arrivals, e)
	first := d.byTime[0] == e
	if now.Sub(d.pruned) > time.Second {
		for k, t := range d.lastFlow {
			if t.Before(now) {
				delete(d.lastFlow, k)
			}
		}
		d.pruned = now
	}
	d.mu.Unlock()

	if first {
		d.signal()
	}
}

func (d *delayer) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// due pops every packet whose time has come (all of them when flushing) and plans their
// verdicts: one cumulative accept up to the newest due packet older than every packet
// still held, then single accepts for the rest. The cumulative accept also frees packets
// whose messages we never received (socket overrun): they are older than the oldest packet
// we hold, so they have waited long enough. It returns the next release time (zero if
// none) and whether nothing is held.
func (d *delayer) due(now time.Time, flush bool) (upTo *held, singles []*held, next time.Time, empty bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ready []*held
	for len(d.byTime) > 0 && (flush || !d.byTime[0].release.After(now)) {
		e := heap.Pop(&d.byTime).(*held)
		e.released = true
		ready = append(ready, e)
	}
	// Trim released packets from the front of the arrival order: what remains at the
	// front is the oldest packet still held.
	i := 0
	for i < len(d.arrivals) && d.arrivals[i].released {
		i++
	}
	var oldest *held
	if i < len(d.arrivals) {
		oldest = d.arrivals[i]
	}
	clear(d.arrivals[:i])
	d.arrivals = d.arrivals[i:]
	if len(d.arrivals) == 0 && cap(d.arrivals) > 4096 {
		d.arrivals = nil // let a burst's backing array go
	}

	for _, e := range ready {
		if oldest == nil || e.seq < oldest.seq {
			if upTo == nil || e.seq > upTo.seq {
				upTo = e
			}
		} else {
			singles = append(singles, e)
		}
	}
	// Single verdicts in arrival order, so a flow leaves in the order it came.
	sortBySeq(singles)
	if len(d.byTime) > 0 {
		next = d.byTime[0].release
	}
	d.released.Add(uint64(len(ready)))
	return upTo, singles, next, len(d.byTime) == 0
}

// schedule releases packets on time until the delayer drains and is empty.
func (d *delayer) schedule() {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		draining := d.draining
		d.mu.Unlock()
		upTo, singles, next, empty := d.due(time.Now(), d.flush.Load())
		d.send(upTo, singles)
		if draining && empty {
			return
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = time.Until(next)
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-d.wake:
		}
	}
}

func (d *delayer) send(upTo *held, singles []*held) {
	if upTo != nil {
		if err := d.v.acceptUpTo(upTo.id); err != nil {
			d.log.Warn("nfqueue verdict", "queue", d.queue, "id", upTo.id, "err", err)
		}
	}
	for _, e := range singles {
		if err := d.v.accept(e.id); err != nil {
			d.log.Warn("nfqueue verdict", "queue", d.queue, "id", e.id, "err", err)
		}
	}
}

// stop stops the delayer once the rule feeding it is gone: packets still held are released
// on schedule, or at once when ctx ends first; then the queue is unbound.
func (d *delayer) stop(ctx context.Context) error {
	// Packets the kernel queued just before the rule went may still be in the socket.
	time.Sleep(5 * time.Millisecond)
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	d.signal()
	select {
	case <-d.done:
	case <-ctx.Done():
		d.flush.Store(true)
		d.signal()
		<-d.done
	}
	var err error
	if d.nf != nil {
		// Whatever arrived after the scheduler finished, and whatever a socket overrun hid
		// from us, is still queued: accept it before unbinding would drop it.
		if id, ok := d.lastID(); ok {
			_ = d.v.acceptUpTo(id)
		}
	}
	if d.cancel != nil {
		d.cancel() // stops the reader, which unbinds the queue
	}
	if d.nf != nil {
		if cerr := d.nf.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("shaping: close nfqueue %d: %w", d.queue, cerr)
		}
	}
	return err
}

func (d *delayer) lastID() (uint32, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last, d.seq > 0
}

// Err is why the reader stopped on its own, or nil.
func (d *delayer) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

func (d *delayer) stats() QueueStats {
	d.mu.Lock()
	n := len(d.byTime)
	d.mu.Unlock()
	return QueueStats{
		Queue:    d.queue,
		Received: d.received.Load(),
		Released: d.released.Load(),
		Held:     n,
		Overruns: d.overruns.Load(),
	}
}

// timeHeap orders held packets by release time, then arrival.
type timeHeap []*held

func (h timeHeap) Len() int { return len(h) }
func (h timeHeap) Less(i, j int) bool {
	if !h[i].release.Equal(h[j].release) {
		return h[i].release.Before(h[j].release)
	}
	return h[i].seq < h[j].seq
}
func (h timeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *timeHeap) Push(x any)   { e := x.(*held); e.index = len(*h); *h = append(*h, e) }
func (h *timeHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

func sortBySeq(s []*held) {
	for i := 1; i < len(s); i++ { // insertion sort: s is short and nearly sorted
		for j := i; j > 0 && s[j].seq < s[j-1].seq; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// flowKey hashes what identifies a flow: IP version, addresses, protocol and, for TCP,
// UDP, SCTP and UDP-Lite packets that are not fragments, the ports. Unparseable packets
// share flow 0, so they keep their order among themselves.
func flowKey(p []byte) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	add := func(b []byte) {
		for _, c := range b {
			h ^= uint64(c)
			h *= prime
		}
	}
	if len(p) == 0 {
		return 0
	}
	hasPorts := func(proto byte) bool { return proto == 6 || proto == 17 || proto == 132 || proto == 136 }
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return 0
		}
		ihl := int(p[0]&0x0f) * 4
		proto := p[9]
		add(p[:1])
		add(p[9:10])
		add(p[12:20])
		fragment := p[6]&0x20 != 0 || (uint16(p[6]&0x1f)<<8|uint16(p[7])) != 0
		if hasPorts(proto) && !fragment && len(p) >= ihl+4 {
			add(p[ihl : ihl+4])
		}
	case 6:
		if len(p) < 40 {
			return 0
		}
		nh := p[6]
		add(p[:1])
		add(p[6:7])
		add(p[8:40])
		if hasPorts(nh) && len(p) >= 44 {
			add(p[40:44])
		}
	default:
		return 0
	}
	return h
}
