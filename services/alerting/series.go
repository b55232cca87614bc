package alerting

import (
	"iter"
	"maps"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
)

// SeriesSet is the series of one signal at one evaluation, shared by every
// rule over that signal: each series' expression environment is built
// once, and an index by label value lets a rule that names a label value
// (service == "platform-txn" && ...) run only over the series that carry
// it, as Prometheus's label matchers select series before evaluating.
type SeriesSet struct {
	series []Series
	envs   []map[string]any
	// index[name][value] lists the series with label name=value;
	// missing[name] those without label name.
	index   map[string]map[string][]int
	missing map[string][]int
}

// NewSeriesSet indexes series.
func NewSeriesSet(series []Series) *SeriesSet {
	s := &SeriesSet{series: series, envs: make([]map[string]any, len(series)),
		index: map[string]map[string][]int{}, missing: map[string][]int{}}
	for i, se := range series {
		env := make(map[string]any, len(se.Fields)+len(se.Labels))
		for k, v := range se.Labels {
			env[k] = v
			byValue := s.index[k]
			if byValue == nil {
				byValue = map[string][]int{}
				s.index[k] = byValue
			}
			byValue[v] = append(byValue[v], i)
		}
		maps.Copy(env, se.Fields)
		s.envs[i] = env
	}
	for name := range s.index {
		for i, se := range series {
			if _, ok := se.Labels[name]; !ok {
				s.missing[name] = append(s.missing[name], i)
			}
		}
	}
	return s
}

// Len returns the number of series.
func (s *SeriesSet) Len() int { return len(s.series) }

// candidates yields the series a rule with these label selectors can hold
// for: every series when none names an indexed label, else those with the
// most selective selector's value (and those without that label, which
// the expression judges).
func (s *SeriesSet) candidates(sel map[string]string) iter.Seq[int] {
	var best []int
	found := false
	for name, value := range sel {
		byValue, ok := s.index[name]
		if !ok {
			continue // a field, or a label no series has
		}
		list := byValue[value]
		if miss := s.missing[name]; len(miss) > 0 {
			list = append(append([]int(nil), list...), miss...)
		}
		if !found || len(list) < len(best) {
			best, found = list, true
		}
	}
	return func(yield func(int) bool) {
		if !found {
			for i := range s.series {
				if !yield(i) {
					return
				}
			}
			return
		}
		for _, i := range best {
			if !yield(i) {
				return
			}
		}
	}
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
	var walk func(n ast.Node)
	walk = func(n ast.Node) {
		b, ok := n.(*ast.BinaryNode)
		if !ok {
			return
		}
		switch b.Operator {
		case "&&", "and":
			walk(b.Left)
			walk(b.Right)
		case "==":
			id, okID := b.Left.(*ast.IdentifierNode)
			str, okStr := b.Right.(*ast.StringNode)
			if !okID || !okStr {
				id, okID = b.Right.(*ast.IdentifierNode)
				str, okStr = b.Left.(*ast.StringNode)
			}
			if okID && okStr {
				if prev, dup := out[id.Value]; dup && prev != str.Value {
					out[id.Value] = "\x00never" // two values: no series holds both
					return
				}
				out[id.Value] = str.Value
			}
		}
	}
	walk(tree.Node)
	return out
}
