package alerting

import (
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// heartbeatEnv is one heartbeat series as a typed expression environment:
// a rule over heartbeats that compiles against it reads fields by offset
// instead of looking names up in a map. Its names and Go types are
// exactly those of the series' labels and fields (fields and labels are
// built from it), so a rule's answers are the same either way.
type heartbeatEnv struct {
	Service   string  `expr:"service"`
	Instance  string  `expr:"instance"`
	CPU       float64 `expr:"cpu"`
	Mem       float64 `expr:"mem"`
	LatencyMS float64 `expr:"latency_ms"`
	P99MS     float64 `expr:"p99_ms"`
	ErrorRate float64 `expr:"error_rate"`
	RPS       float64 `expr:"rps"`
	InFlight  float64 `expr:"in_flight"`
	Leaving   bool    `expr:"leaving"`
	AgeS      float64 `expr:"age_s"`
}

// series returns the heartbeat series h describes.
func (h *heartbeatEnv) series() Series {
	return Series{
		Labels: map[string]string{"service": h.Service, "instance": h.Instance},
		Fields: map[string]any{"cpu": h.CPU, "mem": h.Mem, "latency_ms": h.LatencyMS, "p99_ms": h.P99MS,
			"error_rate": h.ErrorRate, "rps": h.RPS, "in_flight": h.InFlight,
			"leaving": h.Leaving, "age_s": h.AgeS},
		typed: h,
	}
}

// programs are a rule's expression compiled for one kind of environment:
// whole, and without the comparisons of each label selector (see
// compileWithout).
type programs struct {
	full    *vm.Program
	without map[string]*vm.Program
}

// forSelection returns the program for the series sel's index
// guarantees (hit) and for the others (full).
func (p *programs) forSelection(sel selection) (full, hit *vm.Program) {
	if w := p.without[sel.name]; w != nil {
		return p.full, w
	}
	return p.full, p.full
}

// compilePrograms compiles expression with opts, and without each of
// selectors.
func compilePrograms(expression string, selectors map[string]string, opts []expr.Option) (*programs, error) {
	full, err := expr.Compile(expression, opts...)
	if err != nil {
		return nil, err
	}
	p := &programs{full: full, without: map[string]*vm.Program{}}
	p.narrow(expression, selectors, opts)
	return p, nil
}

// narrow compiles expression with opts without each of selectors.
func (p *programs) narrow(expression string, selectors map[string]string, opts []expr.Option) {
	for name, value := range selectors {
		if w, err := compileWithout(expression, name, value, opts); err == nil {
			p.without[name] = w
		}
	}
}

// typedPrograms compiles a rule's expression against its signal's typed
// environment, or returns nil where the signal has none or the
// expression needs what only a map environment gives: a name the signal
// does not have (nil in a map), $env, or a type error caught at compile
// time that a map environment reports at each evaluation instead.
func typedPrograms(over, expression string, selectors map[string]string) *programs {
	if over != OverHeartbeats || mentionsEnv(expression) {
		return nil
	}
	p, err := compilePrograms(expression, selectors, []expr.Option{expr.Env(heartbeatEnv{}), expr.AsBool()})
	if err != nil {
		return nil
	}
	return p
}

// mentionsEnv reports whether expression reads $env.
func mentionsEnv(expression string) bool {
	tree, err := parser.Parse(expression)
	if err != nil {
		return true
	}
	found := false
	ast.Find(tree.Node, func(n ast.Node) bool {
		id, ok := n.(*ast.IdentifierNode)
		found = found || ok && id.Value == "$env"
		return found
	})
	return found
}
