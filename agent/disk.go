package agent

// The disk layer in the agent (disk/layer): a FUSE filesystem per data dir, mounted by
// the agent of the member's node before the member starts, served by this process for
// as long as the run. The agent's shutdown unmounts it; if the agent is killed the
// mount is left without a server, and the controller's teardown (and `dt clean`)
// detaches it by its source name, which carries the run id.
//
// Routes (every path absolute and inside the run directory):
//
//	GET  /disk                               -> []layer.Status
//	POST /disk/mount       DiskMountRequest  -> layer.Status (409 if the dir is mounted)
//	POST /disk/unmount     DiskRequest       -> {}
//	POST /disk/rules       DiskRuleRequest   -> DiskRuleResult: the rule in force, and probes
//	                                            through the mount before and after it
//	POST /disk/rules/clear DiskClearRequest  -> DiskClearResult (404 if no such rule)
//	POST /disk/powerloss   DiskPowerLossRequest -> DiskPowerLossResult (stop the member first)
//	POST /disk/corrupt     DiskCorruptRequest -> disk.CorruptReport (stop the member first)
//	POST /disk/probe       DiskProbeRequest  -> []disk.ProbeResult

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"sync"

	"github.com/dtlab/dt/disk"
	"github.com/dtlab/dt/disk/layer"
)

// DiskMountRequest asks for the disk layer over Dir (a member's data dir); its files
// and bookkeeping live in Store, beside it (Store/files, Store/trash).
type DiskMountRequest struct {
	Dir   string `json:"dir"`
	Store string `json:"store"`
}

// DiskRequest names the layer mounted over Dir.
type DiskRequest struct {
	Dir string `json:"dir"`
}

// DiskRuleRequest puts Rule in force on Dir's layer. Probes (default 1) is how many
// times each of the rule's operations (at most the first four) is probed through the
// mount after the rule is in force; for a slow rule the same probes are made before it
// too, as the baseline its added latency is measured against.
type DiskRuleRequest struct {
	Dir    string    `json:"dir"`
	Rule   disk.Rule `json:"rule"`
	Probes int       `json:"probes,omitempty"`
}

// DiskRuleResult is the rule in force and what the probes saw.
type DiskRuleResult struct {
	Rule     disk.Rule          `json:"rule"`
	Baseline []disk.ProbeResult `json:"baseline,omitempty"`
	Probes   []disk.ProbeResult `json:"probes"`
}

// DiskClearRequest takes rule ID out of force on Dir's layer.
type DiskClearRequest struct {
	Dir string `json:"dir"`
	ID  string `json:"id"`
}

// DiskClearResult says how often the rule fired.
type DiskClearResult struct {
	ID   string `json:"id"`
	Hits int64  `json:"hits"`
}

// DiskPowerLossRequest cuts the power under Dir's layer; Model is what the cut keeps of
// the directory entries (disk.PowerStrict, the default, or disk.PowerOrdered).
type DiskPowerLossRequest struct {
	Dir   string `json:"dir"`
	Model string `json:"model,omitempty"`
}

// DiskPowerLossResult is what a power cut discarded and whether the canary says so.
type DiskPowerLossResult struct {
	Report disk.RevertReport `json:"report"`
	Canary layer.Canary      `json:"canary"`
}

// DiskCorruptRequest damages a file of Dir's layer.
type DiskCorruptRequest struct {
	Dir        string          `json:"dir"`
	Corruption disk.Corruption `json:"corruption"`
}

// DiskProbeRequest probes Op through Dir's layer Count times on a path matching Path.
type DiskProbeRequest struct {
	Dir   string `json:"dir"`
	Op    string `json:"op"`
	Path  string `json:"path,omitempty"`
	Count int    `json:"count,omitempty"`
}

// disks are the agent's layers by mount point.
type disks struct {
	mu     sync.Mutex
	layers map[string]*layer.Layer
}

// maxRuleProbes bounds the operations a rule request probes, and the probes of each.
const (
	maxRuleProbeOps = 4
	maxProbes       = 50
)

func (s *server) diskRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /disk", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.diskStatus())
	})
	mux.HandleFunc("POST /disk/mount", handleJSON(http.StatusOK, func(_ *http.Request, req DiskMountRequest) (layer.Status, error) {
		return s.mountDisk(req)
	}))
	mux.HandleFunc("POST /disk/unmount", handleJSON(http.StatusOK, func(_ *http.Request, req DiskRequest) (struct{}, error) {
		return struct{}{}, s.unmountDisk(req.Dir)
	}))
	mux.HandleFunc("POST /disk/rules", handleJSON(http.StatusOK, func(_ *http.Request, req DiskRuleRequest) (DiskRuleResult, error) {
		return s.addDiskRule(req)
	}))
	mux.HandleFunc("POST /disk/rules/clear", handleJSON(http.StatusOK, func(_ *http.Request, req DiskClearRequest) (DiskClearResult, error) {
		l, err := s.diskLayer(req.Dir)
		if err != nil {
			return DiskClearResult{}, err
		}
		hits, ok := l.RemoveRule(req.ID)
		if !ok {
			return DiskClearResult{}, notFound("no disk rule %q on %s", req.ID, req.Dir)
		}
		s.log.Info("disk rule cleared", "dir", req.Dir, "id", req.ID, "hits", hits)
		return DiskClearResult{ID: req.ID, Hits: hits}, nil
	}))
	mux.HandleFunc("POST /disk/powerloss", handleJSON(http.StatusOK, func(_ *http.Request, req DiskPowerLossRequest) (DiskPowerLossResult, error) {
		l, err := s.diskLayer(req.Dir)
		if err != nil {
			return DiskPowerLossResult{}, err
		}
		if req.Model == "" {
			req.Model = disk.PowerStrict
		}
		if !slices.Contains(disk.PowerModels, req.Model) {
			return DiskPowerLossResult{}, badRequest("power loss model %q: valid are %v", req.Model, disk.PowerModels)
		}
		rep, canary, err := l.PowerLoss(req.Model)
		return DiskPowerLossResult{Report: rep, Canary: canary}, err
	}))
	mux.HandleFunc("POST /disk/corrupt", handleJSON(http.StatusOK, func(_ *http.Request, req DiskCorruptRequest) (disk.CorruptReport, error) {
		l, err := s.diskLayer(req.Dir)
		if err != nil {
			return disk.CorruptReport{}, err
		}
		if err := req.Corruption.Check(); err != nil {
			return disk.CorruptReport{}, badRequest("%v", err)
		}
		rep, err := l.Corrupt(req.Corruption)
		if err != nil {
			return rep, fmt.Errorf("corrupt %s: %w", req.Dir, err)
		}
		s.log.Info("corrupted", "dir", req.Dir, "what", rep.String())
		return rep, nil
	}))
	mux.HandleFunc("POST /disk/probe", handleJSON(http.StatusOK, func(_ *http.Request, req DiskProbeRequest) ([]disk.ProbeResult, error) {
		l, err := s.diskLayer(req.Dir)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(disk.Ops, req.Op) {
			return nil, badRequest("probe: unknown operation %q", req.Op)
		}
		return l.Probe(req.Op, req.Path, min(max(req.Count, 1), maxProbes)), nil
	}))
}

// diskLayer is the layer mounted over dir.
func (s *server) diskLayer(dir string) (*layer.Layer, error) {
	p, err := s.dirs.resolve("disk", dir, true)
	if err != nil {
		return nil, err
	}
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	l := s.disks.layers[p]
	if l == nil {
		return nil, notFound("no disk layer is mounted over %s", dir)
	}
	return l, nil
}

func (s *server) mountDisk(req DiskMountRequest) (layer.Status, error) {
	dir, err := s.dirs.resolve("disk", req.Dir, true)
	if err != nil {
		return layer.Status{}, err
	}
	store, err := s.dirs.resolve("disk store", req.Store, true)
	if err != nil {
		return layer.Status{}, err
	}
	if store == dir || within(dir, store) || within(store, dir) {
		return layer.Status{}, badRequest("disk store %q must lie beside the data dir %q, not inside it or around it", req.Store, req.Dir)
	}
	if s.dirs.socket != "" && within(dir, s.dirs.socket) {
		return layer.Status{}, badRequest("data dir %q holds the agent's socket", req.Dir)
	}
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	if s.disks.layers == nil {
		s.disks.layers = map[string]*layer.Layer{}
	}
	if s.disks.layers[dir] != nil {
		return layer.Status{}, conflict("a disk layer is mounted over %s already", req.Dir)
	}
	l, err := layer.Mount(layer.Options{Mountpoint: dir, Backing: filepath.Join(store, "files"), Trash: filepath.Join(store, "trash"),
		RunID: s.opts.RunID, Node: s.opts.Node, Logger: s.log})
	if err != nil {
		return layer.Status{}, err
	}
	s.disks.layers[dir] = l
	return l.Status(), nil
}

func (s *server) unmountDisk(dir string) error {
	p, err := s.dirs.resolve("disk", dir, true)
	if err != nil {
		return err
	}
	s.disks.mu.Lock()
	l := s.disks.layers[p]
	delete(s.disks.layers, p)
	s.disks.mu.Unlock()
	if l == nil {
		return notFound("no disk layer is mounted over %s", dir)
	}
	return l.Close()
}

func (s *server) diskStatus() []layer.Status {
	s.disks.mu.Lock()
	defer s.disks.mu.Unlock()
	out := []layer.Status{}
	for _, l := range s.disks.layers {
		out = append(out, l.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mountpoint < out[j].Mountpoint })
	return out
}

// addDiskRule probes the rule's operations before (a slow rule's baseline), puts it in
// force, and probes them again.
func (s *server) addDiskRule(req DiskRuleRequest) (DiskRuleResult, error) {
	l, err := s.diskLayer(req.Dir)
	if err != nil {
		return DiskRuleResult{}, err
	}
	if err := req.Rule.Check(); err != nil {
		return DiskRuleResult{}, badRequest("%v", err)
	}
	n := min(max(req.Probes, 1), maxProbes)
	ops := req.Rule.OpsOrDefault()
	ops = ops[:min(len(ops), maxRuleProbeOps)]
	res := DiskRuleResult{Rule: req.Rule}
	if req.Rule.Kind == disk.KindSlow {
		for _, op := range ops {
			res.Baseline = append(res.Baseline, l.Probe(op, req.Rule.Path, n)...)
		}
	}
	if err := l.AddRule(req.Rule); err != nil {
		return DiskRuleResult{}, conflict("%v", err)
	}
	for _, op := range ops {
		res.Probes = append(res.Probes, l.Probe(op, req.Rule.Path, n)...)
	}
	s.log.Info("disk rule in force", "dir", req.Dir, "rule", req.Rule.String())
	return res, nil
}

// cleanDisk empties the layer mounted at p, if there is one there (a data dir's clean).
func (s *server) cleanDisk(p string) (bool, error) {
	s.disks.mu.Lock()
	l := s.disks.layers[p]
	s.disks.mu.Unlock()
	if l == nil {
		return false, nil
	}
	return true, l.Clean()
}

// closeDisks unmounts every layer (the agent's shutdown, after its processes are gone).
func (s *server) closeDisks() {
	s.disks.mu.Lock()
	ls := s.disks.layers
	s.disks.layers = nil
	s.disks.mu.Unlock()
	var errs []error
	for _, l := range ls {
		errs = append(errs, l.Close())
	}
	if err := errors.Join(errs...); err != nil {
		s.log.Warn("unmount disk layers", "err", err)
	}
}

// Disks lists the agent's disk layers.
func (c *Client) Disks(ctx context.Context) ([]layer.Status, error) {
	var out []layer.Status
	err := c.call(ctx, http.MethodGet, "/disk", nil, nil, &out)
	return out, err
}

// MountDisk mounts the disk layer over dir, its files in store (beside dir, not inside
// it). Equivalent to: mkdir -p STORE/files && bindfs STORE/files DIR (with hooks).
func (c *Client) MountDisk(ctx context.Context, dir, store string) (layer.Status, error) {
	var st layer.Status
	err := c.call(ctx, http.MethodPost, "/disk/mount", nil, DiskMountRequest{Dir: absPath(dir), Store: absPath(store)}, &st)
	return st, err
}

// UnmountDisk unmounts dir's layer. Equivalent to: fusermount -u -z DIR.
func (c *Client) UnmountDisk(ctx context.Context, dir string) error {
	return c.call(ctx, http.MethodPost, "/disk/unmount", nil, DiskRequest{Dir: absPath(dir)}, nil)
}

// AddDiskRule puts r in force on dir's layer and returns the probes made through the
// mount before (slow rules) and after it.
func (c *Client) AddDiskRule(ctx context.Context, dir string, r disk.Rule, probes int) (DiskRuleResult, error) {
	var res DiskRuleResult
	err := c.call(ctx, http.MethodPost, "/disk/rules", nil, DiskRuleRequest{Dir: absPath(dir), Rule: r, Probes: probes}, &res)
	return res, err
}

// ClearDiskRule takes rule id out of force on dir's layer.
func (c *Client) ClearDiskRule(ctx context.Context, dir, id string) (DiskClearResult, error) {
	var res DiskClearResult
	err := c.call(ctx, http.MethodPost, "/disk/rules/clear", nil, DiskClearRequest{Dir: absPath(dir), ID: id}, &res)
	return res, err
}

// PowerLoss discards from dir's layer what was not durable under model (disk.PowerStrict
// or disk.PowerOrdered; "" strict). Stop the member first.
func (c *Client) PowerLoss(ctx context.Context, dir, model string) (DiskPowerLossResult, error) {
	var res DiskPowerLossResult
	err := c.call(ctx, http.MethodPost, "/disk/powerloss", nil, DiskPowerLossRequest{Dir: absPath(dir), Model: model}, &res)
	return res, err
}

// CorruptDisk damages a file of dir's layer (stop the member first).
func (c *Client) CorruptDisk(ctx context.Context, dir string, co disk.Corruption) (disk.CorruptReport, error) {
	var res disk.CorruptReport
	err := c.call(ctx, http.MethodPost, "/disk/corrupt", nil, DiskCorruptRequest{Dir: absPath(dir), Corruption: co}, &res)
	return res, err
}

// ProbeDisk performs op through dir's layer count times on a path matching pattern.
func (c *Client) ProbeDisk(ctx context.Context, dir, op, pattern string, count int) ([]disk.ProbeResult, error) {
	var res []disk.ProbeResult
	err := c.call(ctx, http.MethodPost, "/disk/probe", nil, DiskProbeRequest{Dir: absPath(dir), Op: op, Path: pattern, Count: count}, &res)
	return res, err
}
