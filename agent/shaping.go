package agent

// Link shaping in the agent. The agent runs inside its node's namespace for the whole
// run, which is what the userspace backend needs: its NFQUEUE readers live in the process
// that applied the rules. The agent keeps named layers of rules per interface
// (shaping.Layer: the topology's links, `dt link` settings, faults), combines them
// (shaping.Combine) and applies the result with one backend, chosen by the first request
// (the run id is the owner tag). Its shutdown removes everything; if it is killed, the
// controller's teardown calls shaping.CleanupNamespace.
//
// Routes:
//
//	GET  /shaping                           -> ShapeStatus
//	POST /shaping/layers  ShapeRequest      -> ShapeStatus (sets one layer, replacing one of the same name)
//	POST /shaping/clear   ShapeClearRequest -> ShapeStatus (removes layers; 404 if none matched)
//
// Errors: 400 for a bad request (unknown backend, invalid layer), 409 for a request
// naming another backend than the one in use, 501 when the kernel lacks netem, 500 when
// applying failed (the interface then keeps its previous rules if they could be put
// back; the error says so otherwise).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dtlab/dt/shaping"
)

// ShapeRequest sets one layer of impairment rules on one of the agent's interfaces.
type ShapeRequest struct {
	// Backend is the shaping backend: "netem", "userspace" or "auto". The first request
	// chooses; later ones must name the same (or "auto", or nothing).
	Backend string        `json:"backend,omitempty"`
	Iface   string        `json:"iface"`
	Layer   shaping.Layer `json:"layer"`
}

// ShapeClearRequest removes layers: Layer on Iface; every layer of Iface when Layer is
// empty; every layer everywhere when both are.
type ShapeClearRequest struct {
	Iface string `json:"iface,omitempty"`
	Layer string `json:"layer,omitempty"`
}

// ShapeStatus is what the agent's interfaces are doing.
type ShapeStatus struct {
	Backend string        `json:"backend,omitempty"` // "" until the first request
	Ifaces  []IfaceStatus `json:"ifaces"`
	Err     string        `json:"err,omitempty"` // readers that stopped on their own
}

// IfaceStatus is one interface's layers and the rules they combine to.
type IfaceStatus struct {
	Iface  string              `json:"iface"`
	Layers []shaping.Layer     `json:"layers"`
	Rules  []shaping.Rule      `json:"rules"`
	Queue  *shaping.QueueStats `json:"queue,omitempty"` // userspace backend: its readers' counters
}

// linkShaper is the agent's shaping state.
type linkShaper struct {
	owner string
	log   *slog.Logger

	mu      sync.Mutex
	backend shaping.Backend
	layers  map[string]map[string]shaping.Layer // iface -> layer name -> layer
}

func newLinkShaper(owner string, log *slog.Logger) *linkShaper {
	return &linkShaper{owner: owner, log: log, layers: map[string]map[string]shaping.Layer{}}
}

// shapingRoutes registers the shaping routes on mux.
func (s *server) shapingRoutes(mux *http.ServeMux) {
	s.links = newLinkShaper(s.opts.RunID, s.log)
	mux.HandleFunc("GET /shaping", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.links.status())
	})
	mux.HandleFunc("POST /shaping/layers", handleJSON(http.StatusOK, func(r *http.Request, req ShapeRequest) (ShapeStatus, error) {
		return s.links.set(r.Context(), req)
	}))
	mux.HandleFunc("POST /shaping/clear", handleJSON(http.StatusOK, func(r *http.Request, req ShapeClearRequest) (ShapeStatus, error) {
		return s.links.clear(r.Context(), req)
	}))
}

// closeShaping removes every impairment of the agent on its way out.
func (s *server) closeShaping() {
	if s.links == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.links.close(ctx); err != nil {
		s.log.Warn("remove link impairments", "err", err)
	}
}

type closer interface {
	Close(ctx context.Context) error
}

// ensureBackend selects the backend on the first request and checks later ones.
func (ls *linkShaper) ensureBackend(name string) error {
	if ls.backend != nil {
		if name != "" && name != shaping.NameAuto && name != ls.backend.Name() {
			return conflict("shaping backend %q requested, but this agent already uses %q", name, ls.backend.Name())
		}
		return nil
	}
	if name == "" {
		name = shaping.NameAuto
	}
	b, err := shaping.Select(name, ls.owner, shaping.WithLogger(ls.log))
	switch {
	case errors.Is(err, shaping.ErrNetemUnavailable):
		return &statusError{http.StatusNotImplemented, err.Error()}
	case err != nil:
		return badRequest("%v", err)
	}
	ls.backend = b
	ls.log.Info("link shaping backend", "backend", b.Name())
	return nil
}

func (ls *linkShaper) set(ctx context.Context, req ShapeRequest) (ShapeStatus, error) {
	if req.Iface == "" {
		return ShapeStatus{}, badRequest("shaping: iface is required")
	}
	if err := req.Layer.Validate(); err != nil {
		return ShapeStatus{}, badRequest("%v", err)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err := ls.ensureBackend(req.Backend); err != nil {
		return ShapeStatus{}, err
	}
	next := maps(ls.layers[req.Iface])
	next[req.Layer.Name] = req.Layer
	if err := ls.applyLocked(ctx, req.Iface, next); err != nil {
		return ShapeStatus{}, err
	}
	ls.log.Info("link layer set", "iface", req.Iface, "layer", req.Layer.Name, "rules", len(req.Layer.Rules))
	return ls.statusLocked(), nil
}

func (ls *linkShaper) clear(ctx context.Context, req ShapeClearRequest) (ShapeStatus, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var errs []error
	matched := false
	for _, iface := range ls.ifacesLocked() {
		if req.Iface != "" && iface != req.Iface {
			continue
		}
		next := maps(ls.layers[iface])
		for name := range next {
			if req.Layer == "" || name == req.Layer {
				delete(next, name)
				matched = true
			}
		}
		if len(next) != len(ls.layers[iface]) {
			errs = append(errs, ls.applyLocked(ctx, iface, next))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return ShapeStatus{}, err
	}
	if !matched && (req.Iface != "" || req.Layer != "") {
		return ShapeStatus{}, notFound("shaping: no layer %q on %q", req.Layer, req.Iface)
	}
	return ls.statusLocked(), nil
}

// applyLocked makes iface's rules those of layers. On failure the backend has removed
// iface's rules; the previous ones are put back if possible.
func (ls *linkShaper) applyLocked(ctx context.Context, iface string, layers map[string]shaping.Layer) error {
	rules, err := shaping.Combine(values(layers))
	if err != nil {
		return badRequest("%v", err)
	}
	err = ls.backend.ApplyRules(ctx, iface, rules)
	if err == nil {
		if len(layers) == 0 {
			delete(ls.layers, iface)
		} else {
			ls.layers[iface] = layers
		}
		return nil
	}
	if errors.Is(err, shaping.ErrInvalidImpairment) {
		return badRequest("%v", err)
	}
	old, _ := shaping.Combine(values(ls.layers[iface]))
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rerr := ls.backend.ApplyRules(rctx, iface, old); rerr != nil {
		delete(ls.layers, iface)
		return fmt.Errorf("%w; restoring the previous rules failed too, %s is now unimpaired: %v", err, iface, rerr)
	}
	return fmt.Errorf("%w (%s keeps its previous rules)", err, iface)
}

func (ls *linkShaper) status() ShapeStatus {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.statusLocked()
}

func (ls *linkShaper) statusLocked() ShapeStatus {
	st := ShapeStatus{Ifaces: []IfaceStatus{}}
	if ls.backend == nil {
		return st
	}
	st.Backend = ls.backend.Name()
	for _, iface := range ls.ifacesLocked() {
		is := IfaceStatus{Iface: iface, Layers: values(ls.layers[iface]), Rules: ls.backend.Rules(iface)}
		if q, ok := ls.backend.(interface {
			Stats(string) (shaping.QueueStats, bool)
		}); ok {
			if qs, ok := q.Stats(iface); ok {
				is.Queue = &qs
			}
		}
		st.Ifaces = append(st.Ifaces, is)
	}
	if e, ok := ls.backend.(interface{ Err() error }); ok {
		if err := e.Err(); err != nil {
			st.Err = err.Error()
		}
	}
	return st
}

func (ls *linkShaper) ifacesLocked() []string {
	out := make([]string, 0, len(ls.layers))
	for i := range ls.layers {
		out = append(out, i)
	}
	sort.Strings(out)
	return out
}

// close clears every interface and releases the backend.
func (ls *linkShaper) close(ctx context.Context) error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.backend == nil {
		return nil
	}
	var errs []error
	if c, ok := ls.backend.(closer); ok {
		errs = append(errs, c.Close(ctx))
	}
	ls.layers = map[string]map[string]shaping.Layer{}
	ls.backend = nil
	return errors.Join(errs...)
}

func maps(m map[string]shaping.Layer) map[string]shaping.Layer {
	out := make(map[string]shaping.Layer, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// values returns the layers sorted by name.
func values(m map[string]shaping.Layer) []shaping.Layer {
	out := make([]shaping.Layer, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b shaping.Layer) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Shaping returns what the agent's interfaces are doing.
func (c *Client) Shaping(ctx context.Context) (ShapeStatus, error) {
	var st ShapeStatus
	err := c.call(ctx, http.MethodGet, "/shaping", nil, nil, &st)
	return st, err
}

// SetShapeLayer sets one layer of impairment rules on an interface of the agent's node.
func (c *Client) SetShapeLayer(ctx context.Context, req ShapeRequest) (ShapeStatus, error) {
	var st ShapeStatus
	err := c.call(ctx, http.MethodPost, "/shaping/layers", nil, req, &st)
	return st, err
}

// ClearShaping removes layers (see ShapeClearRequest); naming a layer that is not there
// is an ErrNotFound.
func (c *Client) ClearShaping(ctx context.Context, req ShapeClearRequest) (ShapeStatus, error) {
	var st ShapeStatus
	err := c.call(ctx, http.MethodPost, "/shaping/clear", nil, req, &st)
	return st, err
}

// NodeShaper binds a client to a backend: what topology.Live needs of a node.
type NodeShaper struct {
	c       *Client
	backend string
}

// Shaper returns the client as a topology.NodeShaper that asks for backend.
func (c *Client) Shaper(backend string) NodeShaper { return NodeShaper{c: c, backend: backend} }

// SetLayer sets layer l on iface.
func (s NodeShaper) SetLayer(ctx context.Context, iface string, l shaping.Layer) error {
	_, err := s.c.SetShapeLayer(ctx, ShapeRequest{Backend: s.backend, Iface: iface, Layer: l})
	return err
}

// DeleteLayer removes layer name from iface; a layer that is not there is no error.
func (s NodeShaper) DeleteLayer(ctx context.Context, iface, name string) error {
	_, err := s.c.ClearShaping(ctx, ShapeClearRequest{Iface: iface, Layer: name})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}
