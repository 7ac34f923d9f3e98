// Package jobs is where jml's packages declare their durable jobs and
// timers: each River job kind with its worker (and, through the worker,
// its retry policy), and each periodic timer. What is registered is what
// jml serve starts, and Kinds lists it (jml serve logs the list at start).
//
// Timers are of two kinds, both firing once across replicas:
//   - a one-shot timer is a job inserted, in the transaction that decides
//     it, due at its time (a grant's expiry, a scheduled event, a
//     retention); River hands each job to one worker of one replica;
//   - a periodic timer (Every) is enqueued by River's leader alone, one
//     replica at a time elected through the database, so a sweep runs
//     once per period whatever the number of replicas.
//
// It imports only River.
package jobs

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/riverqueue/river"
)

// Kind is one registered job kind.
type Kind struct {
	Name  string // River's kind
	Owner string // the package (or engine file) that declared it
	Doc   string // what it does, in a line
	// Every is how often a periodic timer of this kind is enqueued; zero
	// for a kind enqueued by the transactions that need it.
	Every time.Duration
}

// Registry collects job kinds, workers and periodic timers. It is not safe
// for concurrent use: packages register once, at start.
type Registry struct {
	workers  *river.Workers
	kinds    map[string]*Kind
	periodic []*river.PeriodicJob
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{workers: river.NewWorkers(), kinds: map[string]*Kind{}}
}

// Add registers the worker of job kind T, declared by owner; a kind
// registered twice panics (two packages claiming one kind is a bug).
func Add[T river.JobArgs](r *Registry, owner, doc string, w river.Worker[T]) {
	var args T
	name := args.Kind()
	if _, ok := r.kinds[name]; ok {
		panic(fmt.Sprintf("jobs: kind %s registered twice", name))
	}
	river.AddWorker(r.workers, w)
	r.kinds[name] = &Kind{Name: name, Owner: owner, Doc: doc}
}

// AddFunc is Add for a worker that is a function, with River's default
// retry policy.
func AddFunc[T river.JobArgs](r *Registry, owner, doc string, fn func(context.Context, *river.Job[T]) error) {
	Add(r, owner, doc, river.WorkFunc(fn))
}

// Every makes the registered kind of args a periodic timer, enqueued every
// period (and once when the leader starts).
func (r *Registry) Every(args river.JobArgs, period time.Duration) {
	k, ok := r.kinds[args.Kind()]
	if !ok {
		panic(fmt.Sprintf("jobs: periodic %s has no worker registered", args.Kind()))
	}
	k.Every = period
	r.periodic = append(r.periodic, river.NewPeriodicJob(river.PeriodicInterval(period),
		func() (river.JobArgs, *river.InsertOpts) { return args, nil },
		&river.PeriodicJobOpts{ID: args.Kind(), RunOnStart: true}))
}

// Workers are the registered workers, for River's client.
func (r *Registry) Workers() *river.Workers { return r.workers }

// Periodic are the registered periodic timers, for River's client.
func (r *Registry) Periodic() []*river.PeriodicJob { return r.periodic }

// Kinds lists every registered kind, by name.
func (r *Registry) Kinds() []Kind {
	out := make([]Kind, 0, len(r.kinds))
	for _, k := range r.kinds {
		out = append(out, *k)
	}
	slices.SortFunc(out, func(a, b Kind) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// String lists the kinds, one "name (owner[, every D])" each, for a log
// line.
func (r *Registry) String() string {
	var parts []string
	for _, k := range r.Kinds() {
		s := k.Name + " (" + k.Owner
		if k.Every > 0 {
			s += ", every " + k.Every.String()
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, ", ")
}
