package testsvc

import (
	"io"
	"net"
	"sync"
)

// Proxy forwards TCP connections to a target and can be taken down and
// brought back, to test what happens when a system is unreachable.
type Proxy struct {
	Addr   string // where clients connect
	target string
	ln     net.Listener

	mu    sync.Mutex
	down  bool
	hung  bool // accept, never answer
	conns map[net.Conn]bool
}

// StartProxy listens on a free port of 127.0.0.1 and forwards to target.
func StartProxy(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]bool{}}
	go p.serve()
	return p, nil
}

func (p *Proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, hung := p.down, p.hung
		if !down {
			p.conns[c] = true
		}
		p.mu.Unlock()
		if down {
			c.Close() // a system that is down: connection refused, as near as TCP allows
			continue
		}
		if hung {
			continue // held open, unread, until Up or Close cuts it
		}
		go p.pipe(c)
	}
}

func (p *Proxy) pipe(c net.Conn) {
	t, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		t.Close()
		p.drop(c)
		return
	}
	p.conns[t] = true
	p.mu.Unlock()
	go func() { io.Copy(t, c); p.drop(t) }()
	io.Copy(c, t)
	p.drop(c)
}

func (p *Proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// Down cuts every open connection and refuses new ones until Up.
func (p *Proxy) Down() {
	p.mu.Lock()
	p.down = true
	conns := p.conns
	p.conns = map[net.Conn]bool{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// Hang cuts every open connection, then accepts new ones and never
// answers on them: a system that hangs, until Up.
func (p *Proxy) Hang() {
	p.Down()
	p.mu.Lock()
	p.down, p.hung = false, true
	p.mu.Unlock()
}

// Up forwards again; connections a hang held are cut.
func (p *Proxy) Up() {
	p.mu.Lock()
	p.down = false
	wasHung := p.hung
	p.hung = false
	var held []net.Conn
	if wasHung {
		for c := range p.conns {
			held = append(held, c)
		}
		p.conns = map[net.Conn]bool{}
	}
	p.mu.Unlock()
	for _, c := range held {
		c.Close()
	}
}

// Close stops the proxy.
func (p *Proxy) Close() {
	p.ln.Close()
	p.Down()
}
