package shaping

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	mdnetlink "github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// How delay and loss work, and why not "accept after the delay" and "DROP".
//
// The obvious design holds each queued packet in the kernel and issues ACCEPT when its
// delay is over. Measured here, it caps a TCP flow at about 4 Mbit/s behind a 10 ms
// delay (BBR and CUBIC alike): a queued packet still belongs to its socket, and TCP Small
// Queues lets a socket have only about 1 ms of its pacing rate (at least two packets)
// below TCP at a time, so TCP waits for the delay to end before it sends more. netem has
// the same problem and avoids it by orphaning the packet from its socket on enqueue.
//
// The delayer does the same thing from userspace: it takes a copy of the whole packet,
// issues DROP at once (freeing the socket's memory, as netem's orphaning does), and when
// the delay is over sends the copy out of the same interface through a raw socket
// (IP_HDRINCL) whose packets carry [MarkSent], which the owner's chain lets through. The
// kernel segments GSO packets and completes checksums before copying, so every copy is a
// complete, checksummed packet. Marks, priorities and socket ownership of the original do
// not survive; the packet passes the OUTPUT chain again.
//
// Loss has the same kind of trap. An iptables DROP on the way out returns EPERM to the
// local sender, and TCP then simply sends the segment again a moment later: measured
// here, "10 % loss" that way left a TCP flow at 4.7 Gbit/s with 8 retransmissions in
// 1.3 million segments. netem drops silently, reporting success. So the statistic match
// only marks the packets to lose with [MarkLost] and they go to the queue too, where the
// verdict (asynchronous, so the sender has already been told "sent") drops them, and no
// copy is sent. Without a delay only the lost packets take that detour.

// Firewall marks of the userspace backend (the top byte; other bits are left alone).
// Packets marked MarkSent were sent on by a delayer and pass the owner's chain; packets
// marked MarkLost were chosen by the loss rule and are dropped by the delayer.
const (
	MarkSent = 0xd7000000
	MarkLost = 0xd6000000
	MarkMask = 0xff000000
)

// Reader settings.
const (
	copyRange    = 0xffff   // whole packets: IPv4's largest
	maxQueueLen  = 4096     // packets waiting for us in the kernel; they are dropped at once, so this is only the backlog
	readBuffer   = 16 << 20 // socket buffer for packet messages, so bursts do not overrun it
	sendBuffer   = 32 << 20 // raw socket buffer: lets a tbf queue, not the socket, decide what is dropped
	maxHeldBytes = 64 << 20 // packets held for their delay; beyond it new packets are dropped, like netem's limit
)

// QueueStats counts what one interface's delayer has done.
type QueueStats struct {
	Queue      uint16 // NFQUEUE queue number
	Received   uint64 // packets taken from the queue
	Lost       uint64 // of them, dropped as marked by the loss rule
	Sent       uint64 // packets sent on after their delay
	Held       int    // packets waiting now
	Overruns   uint64 // times the queue socket overflowed: packets lost before we saw them
	Overflows  uint64 // packets dropped because maxHeldBytes were held
	SendErrors uint64 // packets the raw socket refused (a full tbf queue, for one)
}

// sender puts a packet back on the wire.
type sender interface {
	send(pkt []byte) error
}

// delayParams are swapped atomically when an impairment changes while packets flow.
type delayParams struct {
	delay, jitter time.Duration
}

// held is one packet waiting for its release time.
type held struct {
	pkt     []byte
	seq     uint64 // arrival order; breaks ties so a flow keeps its order
	release time.Time
}

// delayer holds the packets of one queue and sends each on at arrival + delay ± jitter,
// never before the previous packet of its flow.
type delayer struct {
	queue uint16
	out   sender
	log   *slog.Logger

	params atomic.Pointer[delayParams]

	mu        sync.Mutex
	byTime    timeHeap
	heldBytes int
	lastFlow  map[uint64]time.Time
	seq       uint64
	rng       *rand.Rand
	pruned    time.Time
	draining  bool
	flush     atomic.Bool

	alarm   *alarm
	alarmMu sync.Mutex // orders the alarm's settings (see rearm)
	done    chan struct{}

	received, lost, sent, overruns, overflows, sendErrors atomic.Uint64

	nf     *nfqueue.Nfqueue // nil in unit tests
	cancel context.CancelFunc
	closer func()
	errMu  sync.Mutex
	err    error // why the reader stopped, if it did on its own
}

func newDelayer(queue uint16, out sender, p delayParams, log *slog.Logger) (*delayer, error) {
	al, err := newAlarm()
	if err != nil {
		return nil, err
	}
	d := &delayer{
		queue:    queue,
		out:      out,
		log:      log,
		lastFlow: make(map[uint64]time.Time),
		rng:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(queue))),
		alarm:    al,
		done:     make(chan struct{}),
	}
	d.params.Store(&p)
	return d, nil
}

// startDelayer opens raw sockets on iface and binds queue, both in the namespace of cfg,
// and starts the reader and the scheduler. A queue bound by someone else fails with an
// error wrapping unix.EBUSY.
func startDelayer(cfg *config, iface string, queue uint16, p delayParams) (*delayer, error) {
	rs, err := openRawSender(cfg, iface)
	if err != nil {
		return nil, err
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        cfg.nsFD(),
		NfQueue:      queue,
		MaxPacketLen: copyRange,
		MaxQueueLen:  maxQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		// No NfQaCfgFlagGSO: the kernel then segments GSO packets and completes partial
		// checksums before copying, so each copy can go out as it is.
		WriteTimeout: time.Second,
	})
	if err != nil {
		rs.close()
		return nil, fmt.Errorf("shaping: open nfqueue %d: %w", queue, err)
	}
	setReadBuffer(nf.Con, readBuffer)
	d, err := newDelayer(queue, rs, p, cfg.log)
	if err != nil {
		rs.close()
		_ = nf.Close()
		return nil, err
	}
	d.nf, d.closer = nf, rs.close
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if err := nf.RegisterWithErrorFunc(ctx, d.onPacket, d.onError(ctx)); err != nil {
		cancel()
		_ = nf.Close()
		rs.close()
		d.alarm.close()
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

// onPacket runs on the library's receive goroutine: it drops the original and keeps a
// copy, unless the loss rule marked the packet. The drop is cumulative (every queued
// packet up to this one), which also clears packets whose messages a socket overrun lost.
func (d *delayer) onPacket(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	if err := d.nf.SetVerdictBatch(*a.PacketID, nfqueue.NfDrop); err != nil {
		d.log.Warn("nfqueue verdict", "queue", d.queue, "id", *a.PacketID, "err", err)
	}
	d.received.Add(1)
	if a.Mark != nil && *a.Mark&MarkMask == MarkLost {
		d.lost.Add(1)
		return 0
	}
	if a.Payload != nil {
		d.enqueue(*a.Payload, time.Now())
	}
	return 0
}

func (d *delayer) onError(ctx context.Context) nfqueue.ErrorFunc {
	return func(err error) int {
		switch {
		case ctx.Err() != nil:
			return 1
		case errors.Is(err, unix.ENOBUFS):
			d.overruns.Add(1)
			d.log.Warn("nfqueue socket overrun: packets lost", "queue", d.queue)
			return 0
		case errors.Is(err, net.ErrClosed):
			return 1
		}
		var oe *mdnetlink.OpError
		if errors.As(err, &oe) && (oe.Timeout() || oe.Temporary()) {
			return 0
		}
		// Stopping unbinds the queue: the rule then drops (no bypass), it never lets
		// packets through undelayed.
		d.errMu.Lock()
		d.err = err
		d.errMu.Unlock()
		d.log.Warn("nfqueue reader stopped", "queue", d.queue, "err", err)
		return 1
	}
}

// enqueue schedules pkt, seen at now.
func (d *delayer) enqueue(pkt []byte, now time.Time) {
	p := d.params.Load()
	key := flowKey(pkt)

	d.mu.Lock()
	if d.heldBytes+len(pkt) > maxHeldBytes {
		d.mu.Unlock()
		d.overflows.Add(1)
		return
	}
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
	e := &held{pkt: pkt, seq: d.seq, release: release}
	d.seq++
	d.heldBytes += len(pkt)
	heap.Push(&d.byTime, e)
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
		d.rearm()
	}
}

// rearm sets the alarm for what the scheduler has to do next: send the first held packet,
// or, when flushing or drained, return at once. It is called after every change that
// can make that earlier, outside mu: setting a timer is a system call, and under mu the
// reader and the scheduler would wait for each other's. alarmMu orders the settings, and
// each one reads the state after taking it, so the last setting is for the state as it is.
func (d *delayer) rearm() {
	d.alarmMu.Lock()
	defer d.alarmMu.Unlock()
	var at time.Time
	d.mu.Lock()
	switch {
	case d.flush.Load() || d.draining && len(d.byTime) == 0:
		at = time.Now()
	case len(d.byTime) > 0:
		at = d.byTime[0].release
	}
	d.mu.Unlock()
	d.alarm.set(at)
}

// due pops every packet whose time has come (all of them when flushing), in release order,
// which keeps each flow in order. It also returns the next release time (zero if none)
// and whether nothing is held.
func (d *delayer) due(now time.Time, flush bool) (ready []*held, next time.Time, empty bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.byTime) > 0 && (flush || !d.byTime[0].release.After(now)) {
		e := heap.Pop(&d.byTime).(*held)
		d.heldBytes -= len(e.pkt)
		ready = append(ready, e)
	}
	if len(d.byTime) > 0 {
		next = d.byTime[0].release
	}
	return ready, next, len(d.byTime) == 0
}

// schedule sends packets on time until the delayer drains and is empty.
//
// It waits on the alarm, a timerfd in Go's netpoller: the goroutine is parked and holds
// no P (none of the GOMAXPROCS slots that run Go code). It must not wait in a system call.
// It used to sleep in ppoll on a locked thread of its own, precise but holding its P all
// the while: the runtime takes a P back from a system call only when sysmon sees it there
// on two of its rounds, and an idle sysmon goes round every 10 ms. Two delayers (a
// router's two interfaces) with GOMAXPROCS=2 then held every P after each wake-up, and
// the rest of the process, NFQUEUE readers and the test's own sockets included, waited
// up to 20 ms: TestUserspaceForwarded measured 3.5-5 ms more RTT on some probes of every
// run and on most probes of 1 run in 5 (median 34 ms for 30 ms), and a p99 error of
// 3-15 ms in BenchmarkUserspace. TestDelayerWaitsOutsideSyscalls guards against it.
// Go timers would not hold a P either but wake up to a millisecond late (the netpoller's
// timeout is in whole milliseconds); a timerfd is an hrtimer without slack, and its
// expiry wakes the netpoller as any ready descriptor does, within tens of microseconds.
func (d *delayer) schedule() {
	defer close(d.done)
	for {
		d.mu.Lock()
		draining := d.draining
		d.mu.Unlock()
		ready, _, empty := d.due(time.Now(), d.flush.Load())
		d.rearm()
		for _, e := range ready {
			if err := d.out.send(e.pkt); err != nil {
				d.sendErrors.Add(1)
			} else {
				d.sent.Add(1)
			}
		}
		if draining && empty {
			return
		}
		if !d.alarm.wait() {
			return // closed under us: nothing can wake us any more
		}
	}
}

// stop stops the delayer once the rule feeding it is gone: packets still held are sent on
// schedule, or at once when ctx ends first; then the queue is unbound.
func (d *delayer) stop(ctx context.Context) error {
	// Packets the kernel queued just before the rule went may still be in the socket.
	time.Sleep(5 * time.Millisecond)
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	d.rearm()
	select {
	case <-d.done:
	case <-ctx.Done():
		d.flush.Store(true)
		d.rearm()
		<-d.done
	}
	if d.cancel != nil {
		d.cancel() // stops the reader, which unbinds the queue
	}
	var err error
	if d.nf != nil {
		if cerr := d.nf.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("shaping: close nfqueue %d: %w", d.queue, cerr)
		}
	}
	// The reader is gone: send what it took after the scheduler finished (its originals
	// were dropped already), then release the sockets.
	ready, _, _ := d.due(time.Now(), true)
	for _, e := range ready {
		_ = d.out.send(e.pkt)
	}
	d.alarm.close()
	if d.closer != nil {
		d.closer()
	}
	return err
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
		Queue:      d.queue,
		Received:   d.received.Load(),
		Lost:       d.lost.Load(),
		Sent:       d.sent.Load(),
		Held:       n,
		Overruns:   d.overruns.Load(),
		Overflows:  d.overflows.Load(),
		SendErrors: d.sendErrors.Load(),
	}
}

// rawSender sends complete IP packets out of one interface.
//
// Equivalent to: socket(AF_INET{,6}, SOCK_RAW, IPPROTO_RAW) with SO_MARK=MarkSent and
// SO_BINDTODEVICE=<iface>, then sendto(packet, its destination).
type rawSender struct {
	v4, v6  int // -1 when absent
	ifindex uint32
}

func openRawSender(cfg *config, iface string) (*rawSender, error) {
	rs := &rawSender{v4: -1, v6: -1}
	err := cfg.do(func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		rs.ifindex = uint32(ifi.Index)
		if rs.v4, err = rawSocket(unix.AF_INET, iface); err != nil {
			return err
		}
		if hasIPv6() {
			if rs.v6, err = rawSocket(unix.AF_INET6, iface); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		rs.close()
		return nil, fmt.Errorf("shaping: raw socket on %s: %w", iface, err)
	}
	return rs, nil
}

// hasIPv6 reports whether this thread's namespace has IPv6 (thread-self: /proc/self/net
// is the main thread's namespace).
func hasIPv6() bool {
	var st unix.Stat_t
	return unix.Stat("/proc/thread-self/net/if_inet6", &st) == nil
}

func rawSocket(family int, iface string) (int, error) {
	// IPPROTO_RAW implies IP_HDRINCL (and IPV6_HDRINCL): we send whole packets.
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	for _, opt := range []struct {
		name string
		set  func() error
	}{
		{"SO_MARK", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, MarkSent) }},
		{"SO_BINDTODEVICE", func() error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface) }},
		{"SO_SNDBUFFORCE", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer) }},
	} {
		if err := opt.set(); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("%s: %w", opt.name, err)
		}
	}
	return fd, nil
}

func (rs *rawSender) send(pkt []byte) error {
	if len(pkt) == 0 {
		return nil
	}
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 || rs.v4 < 0 {
			return errBadPacket
		}
		to := &unix.SockaddrInet4{}
		copy(to.Addr[:], pkt[16:20])
		return unix.Sendto(rs.v4, pkt, unix.MSG_DONTWAIT, to)
	case 6:
		if len(pkt) < 40 || rs.v6 < 0 {
			return errBadPacket
		}
		to := &unix.SockaddrInet6{ZoneId: rs.ifindex}
		copy(to.Addr[:], pkt[24:40])
		return unix.Sendto(rs.v6, pkt, unix.MSG_DONTWAIT, to)
	}
	return errBadPacket
}

var errBadPacket = errors.New("not an IP packet")

func (rs *rawSender) close() {
	for _, fd := range []*int{&rs.v4, &rs.v6} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
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
func (h timeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *timeHeap) Push(x any)   { *h = append(*h, x.(*held)) }
func (h *timeHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
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

// alarm is a timerfd the scheduler waits on through Go's netpoller (see schedule).
type alarm struct {
	f  *os.File
	rc syscall.RawConn
}

func newAlarm() (*alarm, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("shaping: timerfd: %w", err)
	}
	// Non-blocking, so os.NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "delayer-alarm")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shaping: timerfd: %w", err)
	}
	return &alarm{f: f, rc: rc}, nil
}

// set makes the alarm go off at t, at once if t has passed, replacing the previous
// setting; a zero t disarms it.
func (a *alarm) set(t time.Time) {
	var spec unix.ItimerSpec // zero: disarm
	if !t.IsZero() {
		spec.Value = unix.NsecToTimespec(max(int64(time.Until(t)), 1)) // 0 would disarm
	}
	_ = a.rc.Control(func(fd uintptr) { _ = unix.TimerfdSettime(int(fd), 0, &spec, nil) })
}

// wait parks the goroutine until the alarm goes off; false if the alarm is closed.
// Setting the alarm again before the wait resets it: wait then returns at the new time.
func (a *alarm) wait() bool {
	var buf [8]byte // expirations since the last read
	_, err := a.f.Read(buf[:])
	return err == nil
}

func (a *alarm) close() { _ = a.f.Close() }
