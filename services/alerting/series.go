package alerting

import (
	"iter"
	"maps"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
)

// SeriesSet is the series of one signal at one evaluation, shared by every
// rule over that signal: each series' expression environment is built
// once, and an index by label value lets a rule that names a label value
// (service == "platform-txn" && ...) run only over the series that carry
// it, as Prometheus's label matchers select series before evaluating.
type SeriesSet struct {
	series []Series
	// envs are the series' map environments, built on first use: rules
	// that run over typed environments need none.
	envs     []map[string]any
	envsOnce sync.Once
	// index[name][value] lists the series with label name=value;
	// missing[name] those without label name.
	index   map[string]map[string][]int
	missing map[string][]int
}

// NewSeriesSet indexes series. A label is indexed for a series only where
// the series' environment holds it (no field of the same name shadows
// it), so a series listed under name=value is one where the expression
// sees name == value.
func NewSeriesSet(series []Series) *SeriesSet {
	s := &SeriesSet{series: series, index: map[string]map[string][]int{}, missing: map[string][]int{}}
	for i, se := range series {
		for k, v := range se.Labels {
			if _, shadowed := se.Fields[k]; shadowed {
				continue
			}
			byValue := s.index[k]
			if byValue == nil {
				byValue = map[string][]int{}
				s.index[k] = byValue
			}
			byValue[v] = append(byValue[v], i)
		}
	}
	for name := range s.index {
		for i, se := range series {
			_, labelled := se.Labels[name]
			_, shadowed := se.Fields[name]
			if !labelled || shadowed {
				s.missing[name] = append(s.missing[name], i)
			}
		}
	}
	return s
}

// env returns series i's map environment: its labels and fields, a
// field winning over a label of the same name.
func (s *SeriesSet) env(i int) map[string]any {
	s.envsOnce.Do(func() {
		s.envs = make([]map[string]any, len(s.series))
		for i, se := range s.series {
			env := make(map[string]any, len(se.Fields)+len(se.Labels))
			for k, v := range se.Labels {
				env[k] = v
			}
			maps.Copy(env, se.Fields)
			s.envs[i] = env
		}
	})
	return s.envs[i]
}

// value returns what name reads in series se's environment (see env).
func (se *Series) value(name string) any {
	if v, ok := se.Fields[name]; ok {
		return v
	}
	if v, ok := se.Labels[name]; ok {
		return v
	}
	return nil
}

// Len returns the number of series.
func (s *SeriesSet) Len() int { return len(s.series) }

// selection is the series a rule runs over: all of them, or those the
// index lists under name=value (hit: the selector holds there) and those
// the index cannot judge (miss: without the label, or shadowed by a
// field), which the whole expression judges.
type selection struct {
	all       bool
	name      string
	hit, miss []int
}

// first returns the first series selected, -1 for all.
func (c selection) first() int {
	switch {
	case c.all:
		return -1
	case len(c.hit) > 0:
		return c.hit[0]
	case len(c.miss) > 0:
		return c.miss[0]
	}
	return -1 // none selected
}

// each yields the selected series in order, each with whether the index
// guarantees the selector on it (hit) or the whole expression must judge.
func (c selection) each(n int) iter.Seq2[int, bool] {
	return func(yield func(int, bool) bool) {
		if c.all {
			for i := range n {
				if !yield(i, false) {
					return
				}
			}
			return
		}
		for _, i := range c.hit {
			if !yield(i, true) {
				return
			}
		}
		for _, i := range c.miss {
			if !yield(i, false) {
				return
			}
		}
	}
}

// candidates returns the series a rule with these label selectors can
// hold for: every series when none names an indexed label, else those
// with the most selective selector's value and those the index cannot
// judge.
func (s *SeriesSet) candidates(sel map[string]string) selection {
	best := selection{all: true}
	for name, value := range sel {
		byValue, ok := s.index[name]
		if !ok {
			continue // a field, or a label no series has
		}
		c := selection{name: name, hit: byValue[value], miss: s.missing[name]}
		if best.all || len(c.hit)+len(c.miss) < len(best.hit)+len(best.miss) {
			best = c
		}
	}
	return best
}

// selectorsOf returns the name == "value" comparisons an expression's
// top-level && chain requires: the expression is false for any series
// where one of them does not hold, so only series that satisfy them need
// evaluating.
func selectorsOf(expression string) map[string]string {
	tree, err := parser.Parse(expression)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	selectors(&tree.Node, func(_ *ast.Node, name, value string) {
		if prev, dup := out[name]; dup && prev != value {
			out[name] = "\x00never" // two values: no series holds both
			return
		}
		out[name] = value
	})
	return out
}

// selectors calls fn with each name == "value" comparison of the
// top-level && chain at n, and the slot that holds it.
func selectors(n *ast.Node, fn func(slot *ast.Node, name, value string)) {
	b, ok := (*n).(*ast.BinaryNode)
	if !ok {
		return
	}
	switch b.Operator {
	case "&&", "and":
		selectors(&b.Left, fn)
		selectors(&b.Right, fn)
	case "==":
		id, okID := b.Left.(*ast.IdentifierNode)
		str, okStr := b.Right.(*ast.StringNode)
		if !okID || !okStr {
			id, okID = b.Right.(*ast.IdentifierNode)
			str, okStr = b.Left.(*ast.StringNode)
		}
		if okID && okStr {
			fn(n, id.Value, str.Value)
		}
	}
}

// compileWithout compiles expression with opts, with each
// name == "value" comparison of its top-level && chain replaced by true:
// the same program for a series where name == value holds, as comparing
// two strings neither fails nor has effects.
func compileWithout(expression, name, value string, opts []expr.Option) (*vm.Program, error) {
	config := conf.CreateNew()
	for _, op := range opts {
		op(config)
	}
	config.Check()
	tree, err := parser.ParseWithConfig(expression, config)
	if err != nil {
		return nil, err
	}
	selectors(&tree.Node, func(slot *ast.Node, n, v string) {
		if n == name && v == value {
			ast.Patch(slot, &ast.BoolNode{Value: true})
		}
	})
	if _, err := new(checker.Checker).PatchAndCheck(tree, config); err != nil {
		return nil, err
	}
	if config.Optimize {
		if err := optimizer.Optimize(&tree.Node, config); err != nil {
			return nil, err
		}
	}
	return compiler.Compile(tree, config)
}
