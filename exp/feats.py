import re, math, numpy as np
OPT=re.compile(r'(?m)^\s*\(?[A-J][\.\)]\s')
def feats(t):
    n=len(t) or 1
    words=len(t.split())
    digits=sum(c in '0123456789' for c in t)
    nums=len(re.findall(r'\d+(?:\.\d+)?',t))
    opts=len(OPT.findall(t))
    lines=t.count('\n')
    code=sum(t.count(k) for k in ['```','{','}',';','def ','return','import ','=>','();'])
    mathsym=sum(t.count(k) for k in ['=','+','^','\\','$','%','*','/'])
    q=t.count('?')
    upper=sum(c.isupper() for c in t)
    return [math.log1p(len(t)), math.log1p(words), digits/n, math.log1p(nums), min(opts,10)/10, float(opts>=2),
            math.log1p(lines), math.log1p(code), math.log1p(mathsym), math.log1p(q), upper/n,
            float(t.rstrip().endswith('Answer:'))]
NAMES=['log_chars','log_words','digit_frac','log_nums','opts','has_opts','log_lines','log_code','log_math','log_q','upper_frac','ends_answer']
def F(texts): return np.array([feats(t) for t in texts],dtype=np.float32)
