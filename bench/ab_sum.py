"""Summarise bench/ab.sh: medians (min-max) per row and field, old against new."""
import json,glob,sys,statistics as S
out=sys.argv[1]
def load(side,b):
    rows={}
    for f in sorted(glob.glob(f'{out}/{side}-{b}-*.json')):
        d=json.load(open(f))
        for r in d['rows']:
            rows.setdefault(r['name'],[]).append(r['median'])
        rows.setdefault('_machine',[]).append(d['machine'])
    return rows
def med(v):
    v=[x for x in v if x is not None]
    return (S.median(v),min(v),max(v)) if v else None
def fmt(t,p='%.0f'):
    return '-' if not t else (p%t[0])+' ('+(p%t[1])+'–'+(p%t[2])+')'
for b,fields in (('migrate',('total_ms','downtime_ms','first_pass_mbps','first_pass_pct_stream')),('postcopy',('total_ms','downtime_ms','residence_ms','fault_p50_us'))):
    o=load('old',b); n=load('new',b)
    print(f'\n{b}: medians (min–max) of {len(o.get("_machine",[]))} old / {len(n.get("_machine",[]))} new runs, interleaved')
    print('| row | field | old | new | new/old |'); print('|---|---|---:|---:|---:|')
    for name in o:
        if name=='_machine' or name not in n: continue
        for f in fields:
            a=med([r.get(f) for r in o[name]]); c=med([r.get(f) for r in n[name]])
            p='%.1f' if f in ('downtime_ms','fault_p50_us','first_pass_pct_stream') else '%.0f'
            print(f'| {name} | {f} | {fmt(a,p)} | {fmt(c,p)} | {c[0]/a[0]:.2f} |' if a and c and a[0] else f'| {name} | {f} | {fmt(a,p)} | {fmt(c,p)} | - |')
