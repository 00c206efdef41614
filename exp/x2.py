from common import *
from sklearn.linear_model import Ridge
dev=load('dev_routing'); gold=load('train_gold'); Ed=E('dev_routing'); Eg=E('train_gold')
yg=np.array([gain(r) for r in gold]); Fd=F([r['prompt'] for r in dev]); Fg=F([r['prompt'] for r in gold])
mu,sd=Fg.mean(0),Fg.std(0)+1e-6
X=lambda E_,F_: np.hstack([E_,(F_-mu)/sd])
pr=Ridge(alpha=30).fit(X(Eg,Fg),yg).predict(X(Ed,Fd))
rnd=np.array([int(hashlib.sha256(('rnd'+r['id']).encode()).hexdigest()[:12],16)/2**48 for r in dev])
srcmean={'arena-bench-v1':0.28,'routellm-gsm8k':0.2,'routellm-mmlu':0.14}
base=np.array([srcmean[r['source']] for r in dev])
report(dev,base+0.01*rnd,'source prior + random')
report(dev,base+pr,'source prior + ridge')
for p in [0.1,0.15,0.2,0.25,0.3,0.4]:
    d=np.where([r['source']=='arena-bench-v1' for r in dev],p+0*pr,pr); report(dev,d,f'arena const {p}')
